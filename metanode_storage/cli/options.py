"""Options shared by every command, and opening the node they name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metanode_storage.cli.remote import refuse_remote
from metanode_storage.config.paths import HOME_ENV, NodeLayout, resolve_home
from metanode_storage.config.secrets import Secret, passphrase_from_environment

# The engine is imported where a command opens the node, not here: every module of the
# CLI imports this one, and `--help` or a TAB completion must not load the engine.
if TYPE_CHECKING:
    from metanode_storage.engine.node import Node

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar=HOME_ENV,
        help="Node home directory (default: $XDG_DATA_HOME/metanode-storage).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def prompt_passphrase(label: str, confirm: bool) -> str:
    value: str = typer.prompt(label, hide_input=True, confirmation_prompt=confirm)
    return value


def read_passphrase(confirm: bool = False) -> Secret:
    return passphrase_from_environment(prompt_passphrase, confirm=confirm)


def open_node(home: Path | None, read_only: bool = False) -> Node:
    """The node; unless ``read_only`` (the command records no audit event), first make
    sure its trail extends the providers' checkpoints, so a command refuses before doing
    work it could not audit (exit 10 after a rollback)."""
    from metanode_storage.engine.node import Node

    resolved = local_home(home)
    node = _open_with_session(resolved) or Node.open(resolved, read_passphrase())
    if not read_only and node.audit.enabled:
        try:
            node.audit.ensure_extends_providers()
        except BaseException:
            node.close()
            raise
    return node


def local_home(home: Path | None) -> Path:
    """The home of this machine's node that a command works on. Refused under --remote
    (``refuse_remote``): the five commands a service runs have gone through it before."""
    refuse_remote()
    return resolve_home(home)


def _open_with_session(home: Path) -> Node | None:
    """The node unlocked through this home's session agent (no Argon2id here), or None
    when the home has no live session."""
    from metanode_storage.crypto.keystore import keystore_params
    from metanode_storage.engine.node import Node
    from metanode_storage.session import client as session

    keystore = NodeLayout(home).keystore
    if not keystore.exists():
        return None
    unlock = session.SessionUnlock(home)
    passphrase = unlock.passphrase(keystore_params(keystore))
    return None if passphrase is None else Node.open(home, passphrase, unlock.derive)


def parse_bool(value: str) -> bool:
    """The seed writes ``--encryption true``: accept true/false, yes/no, on/off, 1/0."""
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise typer.BadParameter(f"{value!r} is not true or false")
