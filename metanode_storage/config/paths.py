"""Where a node keeps its state on local disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from metanode_storage.database import DatabaseUrl

HOME_ENV = "METANODE_HOME"


def default_home() -> Path:
    """The node home when neither ``--home`` nor ``METANODE_HOME`` is given (XDG data dir)."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "metanode-storage"


def xdg_config_home() -> Path:
    """Where per-user settings live ($XDG_CONFIG_HOME, else ~/.config)."""
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return Path(xdg) if xdg else Path.home() / ".config"


def resolve_home(explicit: Path | str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return default_home().resolve()


@dataclass(frozen=True)
class NodeLayout:
    """The files of one node home. Nothing here holds a secret in clear."""

    home: Path

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @property
    def keystore(self) -> Path:
        return self.home / "keystore.mnk"

    @property
    def blockmap(self) -> Path:
        return self.home / "blockmap.sqlite"

    def map_at(self, map_url: str) -> Path | DatabaseUrl:
        """Where the block map and the lease rows are: ``blockmap.sqlite``, or the shared
        PostgreSQL database of a node with several hosts (``map_url`` from its config)."""
        return DatabaseUrl(map_url) if map_url else self.blockmap

    def trail_at(self, map_url: str) -> Path | DatabaseUrl:
        """Where the audit trail is: ``audit.sqlite``, or the shared database."""
        return DatabaseUrl(map_url) if map_url else self.audit

    @property
    def health(self) -> Path:
        """Provider health learned by earlier runs (not secret, safe to lose)."""
        return self.home / "health.json"

    @property
    def audit(self) -> Path:
        """The audit trail: signed events and checkpoints (no secrets, no file names)."""
        return self.home / "audit.sqlite"

    @property
    def metrics(self) -> Path:
        """Measured counters for `distributed metrics` and /metrics."""
        return self.home / "metrics.sqlite"

    @property
    def local_providers(self) -> Path:
        """Parent of the embedded default's provider directories."""
        return self.home / "providers"
