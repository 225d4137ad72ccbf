"""The node's settings, kept in ``config.toml``.

The file holds no secret: keys live in the keystore and cloud credentials in
each SDK's own sources. It is written with tomli-w and read with tomllib.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from metanode_storage.errors import ConfigDamaged, InvalidSetting, NotInitialised

CONFIG_FORMAT_VERSION = 1
MAX_REPLICATION_FACTOR = 5
LOCAL_VENDOR = "local"
# The catalogue of the seed. Only "local" is reachable until the cloud
# adapters land; the names are fixed here so that configs stay stable.
VENDORS = (
    "aws",
    "gcp",
    "azure",
    "digitalocean",
    "linode",
    "vultr",
    "hetzner",
    "ovh",
    "cloudflare",
    LOCAL_VENDOR,
)


@dataclass(frozen=True)
class ProviderSettings:
    """One configured storage location (a directory, bucket or container)."""

    name: str
    vendor: str
    path: str = ""  # local providers: the directory that holds the blobs
    region: str = ""

    def validate(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise InvalidSetting(
                f"provider name {self.name!r} is not valid",
                "use letters, digits, '-', '_' and '.'",
            )
        if self.vendor not in VENDORS:
            raise InvalidSetting(
                f"provider '{self.name}' has unknown vendor {self.vendor!r}",
                f"choose one of: {', '.join(VENDORS)}",
            )
        if self.vendor == LOCAL_VENDOR and not self.path:
            raise InvalidSetting(f"local provider '{self.name}' has no path")


@dataclass(frozen=True)
class NodeSettings:
    node_id: str
    replication_factor: int = 3
    max_cloud_providers: int = 5
    encryption: bool = True
    compression: bool = True
    backup_enabled: bool = True
    audit_enabled: bool = True
    # With fewer healthy providers than the replication factor a store fails
    # unless this is set; then it succeeds with fewer replicas.
    allow_under_replication: bool = False
    providers: tuple[ProviderSettings, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        if not 1 <= self.replication_factor <= MAX_REPLICATION_FACTOR:
            raise InvalidSetting(
                f"replication factor {self.replication_factor} is out of range",
                f"use 1 to {MAX_REPLICATION_FACTOR}",
            )
        if not self.replication_factor <= self.max_cloud_providers <= MAX_REPLICATION_FACTOR:
            raise InvalidSetting(
                f"max providers {self.max_cloud_providers} is out of range",
                f"use {self.replication_factor} (the replication factor) "
                f"to {MAX_REPLICATION_FACTOR}",
            )
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise InvalidSetting("two providers share a name", "give each a unique name")
        for provider in self.providers:
            provider.validate()
        if len(self.providers) < self.replication_factor and not self.allow_under_replication:
            raise InvalidSetting(
                f"{len(self.providers)} provider(s) cannot hold "
                f"{self.replication_factor} replicas on distinct providers",
                "add providers or lower --replication-factor",
            )


def save_settings(path: Path, settings: NodeSettings) -> None:
    """Write the config atomically, so a crash never leaves half a file."""
    body = asdict(settings)
    providers = body.pop("providers")
    document: dict[str, Any] = {
        "format_version": CONFIG_FORMAT_VERSION,
        "node": body,
        "providers": [{k: v for k, v in p.items() if v != ""} for p in providers],
    }
    tmp = path.with_suffix(".toml.tmp")
    with open(tmp, "wb") as fh:
        tomli_w.dump(document, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_settings(path: Path) -> NodeSettings:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotInitialised(
            f"no node at {path.parent}",
            "run `metanode storage distributed init` or pass --home",
        ) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
        if document.get("format_version") != CONFIG_FORMAT_VERSION:
            raise ValueError(f"format_version {document.get('format_version')!r}")
        node = dict(document["node"])
        providers = tuple(ProviderSettings(**p) for p in document.get("providers", []))
        settings = NodeSettings(**node, providers=providers)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigDamaged(
            f"config {path} is damaged: {exc}",
            "restore it from a backup or fix the TOML by hand",
        ) from None
    try:
        settings.validate()
    except InvalidSetting as exc:
        raise ConfigDamaged(f"config {path} is invalid: {exc.message}", exc.hint) from None
    return settings
