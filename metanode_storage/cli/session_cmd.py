"""`metanode storage session start | status | end`: unlock once, for later commands."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Annotated

import typer

from metanode_storage.cli import console
from metanode_storage.cli.options import HomeOption, JsonOption, local_home, read_passphrase
from metanode_storage.config.paths import NodeLayout
from metanode_storage.errors import InputError

if TYPE_CHECKING:
    from metanode_storage.session.client import SessionInfo


app = typer.Typer(
    rich_markup_mode=None,
    help="Unlock the keystore once; later commands on this home use the session until it "
    "ends or expires (QLOCK sessions).",
    no_args_is_help=True,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_TTL = 7 * 86400


def parse_ttl(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``1h``, ``1h30m``, ``2d``: seconds, at most seven days."""
    parts = re.fullmatch(r"(?:\d+[smhd]?)+", text.strip())
    pieces = re.findall(r"(\d+)([smhd]?)", text.strip()) if parts else []
    seconds = sum(int(n) * _UNITS[u or "s"] for n, u in pieces)
    if not pieces or not 0 < seconds <= _MAX_TTL:
        raise InputError(
            f"{text!r} is not a session length", "give e.g. 30m, 1h or 8h (at most 7d)"
        )
    return float(seconds)


def _describe(info: SessionInfo) -> dict[str, object]:
    return {
        "active": True,
        "home": info.home,
        "pid": info.pid,
        "started_at": int(info.started_at),
        "expires_at": int(info.expires_at),
        "seconds_left": max(0, int(info.expires_at - time.time())),
    }


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp))


@app.command()
def start(
    ttl: Annotated[
        str, typer.Option("--ttl", help="How long the session lasts: 30m, 1h, 8h (at most 7d).")
    ] = "1h",
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check the passphrase, then hand it to a session agent for this home."""
    from metanode_storage.crypto.keystore import read_keystore
    from metanode_storage.session import client

    seconds = parse_ttl(ttl)
    resolved = local_home(home)
    passphrase = read_passphrase()
    read_keystore(NodeLayout(resolved).keystore, passphrase)  # a wrong passphrase fails here
    info = client.start(resolved, passphrase, seconds)
    if json_output:
        console.emit_json(_describe(info))
        return
    console.line(f"session for {info.home} until {_when(info.expires_at)} (agent pid {info.pid})")


@app.command()
def status(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Whether this home has a session, and until when."""
    from metanode_storage.session import client

    info = client.status(local_home(home))
    if json_output:
        console.emit_json(_describe(info) if info else {"active": False})
        return
    if info is None:
        console.line("no session: commands ask for the passphrase")
    else:
        left = int(info.expires_at - time.time())
        console.line(
            f"session until {_when(info.expires_at)} ({left} s left, agent pid {info.pid})"
        )


@app.command()
def end(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """End the session now: the agent forgets the passphrase and exits."""
    from metanode_storage.session import client

    ended = client.end(local_home(home))
    if json_output:
        console.emit_json({"ended": ended})
        return
    console.line("session ended" if ended else "no session to end")
