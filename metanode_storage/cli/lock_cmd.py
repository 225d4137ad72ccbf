"""`metanode storage lock status | break`: the QLOCK leases of a node home."""

from __future__ import annotations

from contextlib import closing
from typing import Annotated

import typer

from metanode_storage.cli import console, formatting
from metanode_storage.cli.options import HomeOption, JsonOption, local_home, open_node
from metanode_storage.config.paths import NodeLayout
from metanode_storage.config.settings import load_settings
from metanode_storage.errors import InputError

app = typer.Typer(
    rich_markup_mode=None,
    help="Show or break the node's QLOCK leases (named locks with deadlines).",
    no_args_is_help=True,
)


@app.command()
def status(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Who holds which lock, what for, under which fencing token, and until when.
    Needs no passphrase: leases hold nothing secret."""
    from metanode_storage.blockmap.leases import LeaseTable

    layout = NodeLayout(local_home(home))
    settings = load_settings(layout.config)  # a home that is not a node fails here, clearly
    with closing(LeaseTable(layout.map_at(settings.map_url))) as table:
        holders = table.holders()
    if json_output:
        console.emit_json(
            {"leases": [{**lease.to_dict(), "state": state} for lease, state in holders]}
        )
        return
    if not holders:
        console.line("no lock is held")
        return
    console.table(
        "QLOCK leases",
        ["Lock", "Mode", "Token", "Holder", "Purpose", "Deadline", "State"],
        [
            [
                lease.name,
                lease.mode,
                str(lease.token),
                lease.holder,
                lease.purpose,
                formatting.timestamp(lease.deadline),
                state,
            ]
            for lease, state in holders
        ],
        whole=["Token"],
    )


@app.command("break")
def break_lock(
    name: Annotated[str, typer.Argument(help="The lock: blocks or backup.")],
    token: Annotated[
        int | None, typer.Option("--token", help="Break only the lease with this token.")
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Remove a lock's leases, recorded in the audit trail. A holder that is still running
    finds out at its next map write (its fencing token no longer stands) and stops
    without writing. Use it for a holder you know is stuck; a dead one is taken over
    on its own."""
    from metanode_storage.audit.trail import OK

    with open_node(home) as node:
        broken = node.leases.break_leases(name, token)
        if not broken:
            what = f"lease {token} of lock '{name}'" if token is not None else f"lock '{name}'"
            raise InputError(f"no {what} is held", "see `metanode storage lock status`")
        node.audit.record_many([("lock_break", "", OK, lease.to_dict()) for lease in broken])
    if json_output:
        console.emit_json({"broken": [lease.to_dict() for lease in broken]})
        return
    for lease in broken:
        console.line(
            f"broke {lease.mode} lease {lease.token} on '{lease.name}' held by "
            f"{lease.holder} to {lease.purpose}"
        )
