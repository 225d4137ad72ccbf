"""`metanode storage --remote URL ...`: put, get, ls, verify and status through a service.

The storage group's callback records the remote settings for this run; the five
commands ask ``service()`` and, when it gives one, run through it instead of a
local node. Every other command refuses (``refuse_remote``) rather than act on this
machine's node. Nothing here is kept between runs but the pinned service keys.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, cast

import typer

from metanode_storage.cli import console
from metanode_storage.config.paths import xdg_config_home
from metanode_storage.errors import InputError, InvalidSetting
from metanode_storage.fileio import output_file

if TYPE_CHECKING:
    from metanode_storage.transport.client import RemoteService


TOKEN_ENV = "METANODE_TOKEN"
_settings: dict[str, Any] = {}


def configure(
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            envvar="METANODE_REMOTE",
            help="A running service's URL: put, get, ls, verify and status go through it.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help=f"File holding the service's token (default: ${TOKEN_ENV})."),
    ] = None,
    service_key: Annotated[
        str | None,
        typer.Option(
            envvar="METANODE_SERVICE_KEY",
            help="The service's signing key (`keys show --json` public_key); default: pinned "
            "on first use.",
        ),
    ] = None,
    cacert: Annotated[
        Path | None,
        typer.Option(envvar="METANODE_CACERT", help="CA certificate(s) to trust for https."),
    ] = None,
) -> None:
    """Store, retrieve and verify data."""
    _settings.clear()
    if remote:
        _settings.update(url=remote, token_file=token_file, key=service_key, cacert=cacert)


def refuse_remote() -> None:
    """For a command that works on this machine's node only: with --remote (or
    METANODE_REMOTE) the user means the service's node, so running it here would change
    or report the wrong one."""
    if _settings:
        raise InvalidSetting(
            "this command is not available through --remote: it works on a local node",
            "run it on the node itself, without --remote and with METANODE_REMOTE unset",
        )


def service() -> RemoteService | None:
    """The remote service this run talks to, or None for a local node."""
    if not _settings:
        return None
    from metanode_storage.transport.client import RemoteService

    token_file = _settings["token_file"]
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidSetting(f"cannot read the token file {token_file}: {exc}") from None
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise InvalidSetting(
            "the remote service needs its token",
            f"set {TOKEN_ENV} or give --token-file (`token show` on the node prints it)",
        )
    return RemoteService(
        _settings["url"],
        token,
        xdg_config_home() / "metanode-storage" / "known-services.json",
        cafile=_settings["cacert"],
        service_key=_settings["key"],
    )


class _Counted:
    """A file object that reports each read to a progress bar."""

    def __init__(self, source: BinaryIO, advance: Callable[[int], None]) -> None:
        self._source = source
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        piece = self._source.read(size)
        self._advance(len(piece))
        return piece


def put(remote: RemoteService, paths: list[str], json_output: bool) -> None:
    from metanode_storage.engine.tree import WalkReport

    if len(paths) != 1 or Path(paths[0]).is_dir():
        raise InvalidSetting("through --remote, store one file (or -) at a time")
    path = paths[0]
    with contextlib.ExitStack() as stack:
        if path == "-":
            source, size, name = console.binary_stdin(), None, ""
        else:
            try:
                source = stack.enter_context(open(path, "rb"))
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror}") from None
            size, name = os.fstat(source.fileno()).st_size, Path(path).name
        bar = stack.enter_context(console.byte_progress("storing", size))
        block = remote.put(cast(BinaryIO, _Counted(source, bar.advance)), name)
    block.pop("proof", None)
    if json_output:
        console.emit_json({**block, **WalkReport().to_dict()})  # as a local put's
    else:
        console.line(block["block_id"])


def get(remote: RemoteService, block_id: str, output: Path | None) -> None:
    if output is None or str(output) == "-":
        sink = console.binary_stdout()
        remote.get(block_id, sink)
        sink.flush()
        return
    with output_file(output) as fh:  # only a verified block replaces anything
        remote.get(block_id, fh)
