"""`metanode storage repair`: one pass of the backup manager, for cron or by hand."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from metanode_storage.cli import console
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.engine.repair_defaults import DEFAULT_LIMIT, DEFAULT_OFFLINE_GRACE
from metanode_storage.errors import ExitCode


def repair_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be done.")] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify", help="Read and verify every replica first (slow: reads all the data)."
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option(min=1, help="Chunks to repair in this pass.")
    ] = DEFAULT_LIMIT,
    max_rate: Annotated[
        float | None, typer.Option(min=0.01, help="Upload at most this many MB/s.")
    ] = None,
    offline_grace: Annotated[
        float, typer.Option(min=0, help="Seconds Offline before a provider's replicas move.")
    ] = DEFAULT_OFFLINE_GRACE,
    rewrite: Annotated[
        bool,
        typer.Option(
            "--rewrite",
            help="Also move up to --limit chunks stored under another redundancy to the "
            "node's current one (see `distributed redundancy`).",
        ),
    ] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Re-create missing, corrupt and long-Offline replicas from good copies.

    First looks for itself: lists every provider and looks up every replica
    (with --verify, reads and checks every replica), and checks each provider's
    map backup, writing anew one that lost or damaged a piece. Exit 0 when all
    is whole, 10 when a chunk has no good copy left, 6 when a provider could not
    be checked or could not take a replica or map backup.
    """
    from metanode_storage.engine.repair import repair
    from metanode_storage.engine.repair_report import SURVEY_EXISTS, SURVEY_VERIFY

    with open_node(home) as node, console.count_progress("repairing chunks", None) as bar:
        report = repair(
            node,
            dry_run=dry_run,
            survey=SURVEY_VERIFY if verify else SURVEY_EXISTS,
            limit=limit,
            offline_grace=offline_grace,
            max_bytes_per_second=max_rate * 1e6 if max_rate else None,
            rewrite=rewrite,
            progress=bar.advance,
        )
    if json_output:
        console.emit_json(
            {
                **asdict(report),
                "repaired": report.repaired,
                "failed": report.failed,
                "lost": report.lost,
            }
        )
    else:
        verb = "would repair" if dry_run else "repaired"
        for action in report.actions:
            why = ", ".join(f"{p}: {r}" if p else r for p, r in action.reasons.items())
            done = f" -> {', '.join(action.new_replicas)}" if action.new_replicas else ""
            console.line(
                f"chunk {action.chunk} ({why}){done}"
                + (f" FAILED: {action.error}" if action.error else "")
            )
        for provider in report.unsurveyed:
            console.line(f"provider {provider} could not be checked")
        for provider in report.unconfigured:
            console.line(f"provider {provider} is no longer configured: its replicas move")
        for provider, outcome in report.map_backups.items():
            console.line(f"map backup on {provider}: {outcome}")
        console.line(
            f"{verb} {len(report.actions) if dry_run else report.repaired} chunk(s), "
            f"{report.failed} failed, {report.backups_cleaned} backup copies cleaned up"
        )
    if report.lost:
        raise typer.Exit(int(ExitCode.INTEGRITY))
    if report.failed or report.unsurveyed or report.map_backups_failed:
        raise typer.Exit(int(ExitCode.PROVIDER))
