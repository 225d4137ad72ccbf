"""`metanode storage audit verify | list`, and the summary and integrity audit behind
`metanode storage distributed audit`."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metanode_storage.cli import console, formatting
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.cli.public_keys import PublicKeyOption, parse_public_keys
from metanode_storage.errors import ExitCode, InputError, InvalidSetting
from metanode_storage.fileio import output_file

if TYPE_CHECKING:
    from metanode_storage.audit.trail import TrailVerification


app = typer.Typer(
    rich_markup_mode=None,
    help="Check and read the tamper-evident audit trail.",
    no_args_is_help=True,
)


def summary(home: Path | None, json_output: bool) -> None:
    """The seed's audit summary, computed from the trail."""
    with open_node(home, read_only=True) as node:
        result = node.audit.trail.summary()
    if json_output:
        console.emit_json(asdict(result))
        return
    console.key_values(
        [
            ("Total Audit Events", f"{result.total_events:,}"),
            ("Storage Operations", f"{result.storage_operations:,}"),
            ("Retrieval Operations", f"{result.retrieval_operations:,}"),
            ("Integrity Violations", f"{result.integrity_violations:,}"),
            ("Covered by Signed Checkpoint", f"{result.checkpoint_size:,} events"),
        ]
    )


def integrity(home: Path | None, sample: int | None, quick: bool, json_output: bool) -> None:
    """Check replicas and map backups on every provider; exit 0 clean, 10 violations (a
    broken map backup is written anew, and still counts), 6 unreachable."""
    from metanode_storage.engine.integrity import run_integrity_audit

    with open_node(home) as node:
        total = node.map_stats().blocks if sample is None else sample
        with console.count_progress("auditing blocks", total) as bar:
            report = run_integrity_audit(node, sample, quick, bar.advance)
    if json_output:
        console.emit_json(
            {**asdict(report), "data_integrity_percent": report.data_integrity_percent}
        )
    else:
        for violation in report.violations:
            where = f" on {violation['provider']}" if violation["provider"] else ""
            console.line(
                f"VIOLATION {violation['block_id']}{where}: {violation['state']} "
                f"({violation['detail']})"
            )
        for provider in report.unreachable:
            console.line(f"UNREACHABLE provider {provider}")
        for provider, outcome in report.map_backups.items():
            console.line(f"VIOLATION map backup on {provider}: {outcome}")
        console.key_values(
            [
                (
                    "Integrity Audit",
                    f"{report.mode}, {report.blocks_checked:,} of {report.blocks_total:,} blocks",
                ),
                ("Replicas Checked", f"{report.replicas_checked:,}"),
                ("Integrity Violations", f"{len(report.violations):,}"),
                ("Data Integrity", formatting.percent(report.data_integrity_percent)),
            ]
        )
    if report.violations or report.map_backups:
        raise typer.Exit(int(ExitCode.INTEGRITY))
    if report.unreachable:
        raise typer.Exit(int(ExitCode.PROVIDER))


def _report(result: TrailVerification, json_output: bool) -> None:
    if json_output:
        console.emit_json({**asdict(result), "ok": result.ok})
    elif result.ok:
        console.line(
            f"audit trail intact: {result.events:,} events, {result.checkpoints:,} checkpoints "
            f"verified, {result.covered:,} events covered by the newest signed checkpoint"
        )
    else:
        console.line(f"audit trail TAMPERED: {result.problems[0]}")
    if not result.ok:
        raise typer.Exit(int(ExitCode.INTEGRITY))


@app.command()
def verify(
    home: HomeOption = None,
    trail: Annotated[
        Path | None,
        typer.Option(help="Check this audit.sqlite offline (needs --public-key, no keystore)."),
    ] = None,
    public_key: PublicKeyOption = None,
    since: Annotated[
        Path | None,
        typer.Option(help="Offline: a checkpoint kept earlier (with --checkpoint, --public-key)."),
    ] = None,
    newer: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="With --since: `audit checkpoint --since` output."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Check every event, link and checkpoint, and the checkpoints kept on the providers.

    With --since OLD --checkpoint NEW --public-key KEY: check, with no trail, that the
    newer checkpoint extends the one kept (RFC 6962 consistency proof).

    Exit 0 when intact, 10 at the first tampered event (named in the output).
    """
    from metanode_storage.audit.trail import AuditTrail

    if since is not None or newer is not None:
        if since is None or newer is None:
            raise InvalidSetting("--since and --checkpoint go together")
        _verify_since(since, newer, public_key, json_output)
        return
    if trail is not None:
        keys = parse_public_keys(public_key)
        if not keys:
            raise InvalidSetting("--trail needs --public-key (every key that signed it)")
        if not trail.is_file():
            raise InvalidSetting(f"no audit trail at {trail}")
        offline = AuditTrail(trail, origin=_origin_of(trail))
        try:
            _report(offline.verify(keys), json_output)
        finally:
            offline.close()
        return
    with open_node(home, read_only=True) as node:
        result = node.audit.verify()
    _report(result, json_output)


@app.command()
def checkpoint(
    home: HomeOption = None,
    since: Annotated[
        Path | None,
        typer.Option(help="A checkpoint kept earlier: add the proof that this one extends it."),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write it here.")] = None,
) -> None:
    """Print the newest signed checkpoint, for an auditor to keep; with --since, a JSON
    document with the consistency proof from the kept one (for `audit verify --since`)."""
    from metanode_storage.audit.note import Checkpoint

    with open_node(home, read_only=True) as node:
        if output is not None:
            node.refuse_own_state(output)
        note = node.audit.trail.checkpoint()
        if since is None:
            text = note
        else:
            kept = Checkpoint.parse_unverified(_read_text(since))
            new = Checkpoint.parse_unverified(note)
            proof = node.audit.trail.consistency_proof(kept.size, new.size) if kept.size else []
            text = (
                json.dumps(
                    {"checkpoint": note, "since": kept.size, "proof": [p.hex() for p in proof]},
                    indent=2,
                )
                + "\n"
            )
    if output is None:
        console.text(text)
        return
    with output_file(output) as fh:
        fh.write(text.encode())


@app.command("acknowledge-cut")
def acknowledge_cut(
    reason: Annotated[
        str, typer.Option(help="Why the cut is accepted (recorded in the signed event).")
    ],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Accept that the trail does not extend a provider's checkpoint (after a rollback or
    a lost trail was investigated), so commands may record again.

    The acknowledgement is itself a signed event holding the providers' checkpoints,
    so an auditor sees the cut and who accepted it; then a new checkpoint is published.
    """
    with open_node(home, read_only=True) as node:
        acknowledged = node.audit.acknowledge_cuts(reason)
    if json_output:
        console.emit_json([{"provider": p, "problem": why} for p, why in acknowledged])
        return
    if not acknowledged:
        console.line("nothing to acknowledge: the trail extends every provider's checkpoint")
    for provider, why in acknowledged:
        console.line(f"acknowledged the cut on {provider}: {why}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None


def _verify_since(kept: Path, newer: Path, public_key: list[str] | None, json_output: bool) -> None:
    from metanode_storage.audit.consistency import check_extension

    keys = list(parse_public_keys(public_key).values())
    if not keys:
        raise InvalidSetting("--since needs --public-key (the node's keys: `keys show`)")
    try:
        document = json.loads(_read_text(newer))
        proof = [bytes.fromhex(h) for h in document["proof"]]
        note = str(document["checkpoint"])
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InputError(f"{newer} is not a checkpoint with a proof: {exc}") from None
    result = check_extension(_read_text(kept), note, proof, keys)
    if json_output:
        console.emit_json(
            {
                "ok": not result.problem,
                "problem": result.problem,
                "old_size": result.old.size if result.old else None,
                "new_size": result.new.size if result.new else None,
            }
        )
    elif result.problem:
        console.line(f"NOT EXTENDED: {result.problem}")
    else:
        assert result.old is not None and result.new is not None
        console.line(
            f"the checkpoint at {result.new.size:,} events extends the one kept at "
            f"{result.old.size:,}: nothing it covered was removed or changed"
        )
    if result.problem:
        raise typer.Exit(int(ExitCode.INTEGRITY))


def _origin_of(trail: Path) -> str:
    """The origin line of the trail's own checkpoints (checked against the signatures)."""
    from metanode_storage.audit.trail import AuditTrail

    probe = AuditTrail(trail, origin="")
    try:
        note = probe.latest_note()
    finally:
        probe.close()
    return note.split("\n", 1)[0] if note else ""


def _timestamp(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        raise InvalidSetting(f"{text!r} is not a date", "use ISO 8601: 2026-11-24T10:00") from None


@app.command("list")
def list_events(
    home: HomeOption = None,
    block: Annotated[str | None, typer.Option(help="Only events of this block.")] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="store, retrieve, verify, delete, ...")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 date or time.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601 date or time.")] = None,
    limit: Annotated[int | None, typer.Option(min=1)] = None,
    json_output: JsonOption = False,
) -> None:
    """Events of the trail, oldest first, filtered."""
    with open_node(home, read_only=True) as node:
        events = list(
            node.audit.trail.events(
                block_id=block,
                event_type=event_type,
                since=_timestamp(since),
                until=_timestamp(until),
                limit=limit,
            )
        )
    if json_output:
        console.emit_json([asdict(e) for e in events])
        return
    console.table(
        f"{len(events)} event(s)",
        ["#", "time", "type", "block", "status", "fence"],
        [
            [
                str(e.seq),
                formatting.timestamp(e.time),
                e.type,
                e.block_id,
                e.status,
                "" if e.fence is None else str(e.fence),
            ]
            for e in events
        ],
    )
