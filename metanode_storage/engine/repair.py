"""The backup manager's repair pass: restore every chunk to its replication factor.

What needs repair: replicas found missing or corrupt, replicas on providers
that have been Offline longer than a grace period, and chunks stored with
fewer replicas than wanted. A pass does not trust what earlier runs found:
it first surveys the providers itself (``SURVEY_EXISTS``: one listing per
provider, every replica looked up in it; ``SURVEY_VERIFY``: every replica
read and verified), and adds what it finds to the map's fault table, which
retrieves, verifies and integrity audits also feed.

Each is re-created from a verified good copy onto a healthy provider that
does not hold the chunk yet, into packs as a store writes them; once every
pack is durable, the chunks' rows are swapped in one transaction. A replica
on an Offline provider is not deleted (it cannot be, and it may still be
good): it becomes a backup location that reads fall back to, and a later
pass lets it go once its provider answers. A missing or corrupt replica is
let go after its replacement is written: a blob of its own is deleted, a
copy inside a pack only stops counting, and the pack is deleted once no
live copy is left in it (`gc` rewrites it sooner when mostly dead).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from metanode_storage.audit.trail import FAILED, OK, REPAIR
from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.engine import blobformat
from metanode_storage.engine.maintenance import check_map_backups
from metanode_storage.engine.node import Node
from metanode_storage.engine.packs import PackWriter
from metanode_storage.engine.placement import providers_for_repair
from metanode_storage.engine.reader import CORRUPT, MISSING, UNCONFIGURED, ReplicaCheck
from metanode_storage.engine.removal import delete_quietly
from metanode_storage.engine.repair_defaults import DEFAULT_LIMIT, DEFAULT_OFFLINE_GRACE
from metanode_storage.engine.repair_report import (
    NO_GOOD_COPY,
    NO_TARGET,
    SURVEY_EXISTS,
    SURVEY_NONE,
    SURVEY_VERIFY,
    RepairAction,
    RepairReport,
)
from metanode_storage.engine.rewrite import BATCH, by_size, rewrite_chunks
from metanode_storage.engine.writer import Piece
from metanode_storage.errors import (
    IntegrityError,
    MetanodeError,
    ProviderError,
)
from metanode_storage.providers.health import OFFLINE

_GONE = "the chunk is no longer in the map"  # removed since the plan: nothing to record
_LOST = (CORRUPT, MISSING, UNCONFIGURED)  # copies dropped from the map once replaced


def survey_replicas(node: Node, report: RepairReport, progress: Callable[[int], None]) -> None:
    """Look at the providers now and record every missing (or, with SURVEY_VERIFY, corrupt)
    replica in the fault table. A provider that cannot be listed is named in the report."""
    if report.survey == SURVEY_VERIFY:
        checked: dict[bytes, list[ReplicaCheck]] = {}  # each chunk's copies, checked once
        for block in node.blockmap.blocks():
            result = node.verify_record(block, progress, checked)
            report.unsurveyed = sorted(set(report.unsurveyed) | set(result.unreachable))
        report.found_bad += sum(c.is_fault for checks in checked.values() for c in checks)
        return
    listed: dict[str, set[str]] = {}
    gone = set()  # providers taken out of the config: their replicas must move
    for name, store in node.providers.items():
        try:
            store.check_reachable()  # an empty listing must mean empty, not unmounted
            listed[name] = set(store.list_keys())
        except ProviderError:
            report.unsurveyed.append(name)
    for record in node.blockmap.chunks():
        for replica in record.replicas:
            keys = listed.get(replica.provider)
            if keys is not None and replica.key not in keys:
                node.blockmap.record_fault(record.chunk_id, replica.provider, MISSING)
                report.found_missing += 1
            elif replica.provider not in node.providers:
                node.blockmap.record_fault(record.chunk_id, replica.provider, UNCONFIGURED)
                gone.add(replica.provider)
                report.found_missing += 1
    report.unconfigured = sorted(gone)


def plan_repairs(node: Node, offline_grace: float) -> dict[bytes, dict[str, str]]:
    """chunk id -> {provider: reason} for every chunk that needs a new replica."""
    plan: dict[bytes, dict[str, str]] = {}
    for chunk_id, provider, kind in node.blockmap.faults():
        plan.setdefault(chunk_id, {})[provider] = kind
    now = time.time()
    long_offline = set()
    for name in node.providers:
        health = node.health.get(name)
        if health.state == OFFLINE and now - health.offline_since >= offline_grace:
            long_offline.add(name)
    if long_offline or node.blockmap.stats().short_chunks:
        for record in node.blockmap.chunks():
            for replica in record.replicas:
                if replica.provider in long_offline:
                    plan.setdefault(record.chunk_id, {})[replica.provider] = "offline"
            if record.is_short:
                plan.setdefault(record.chunk_id, {}).setdefault("", "short")
    return plan


def repair(
    node: Node,
    *,
    dry_run: bool = False,
    survey: str = SURVEY_EXISTS,
    limit: int = DEFAULT_LIMIT,
    max_bytes_per_second: float | None = None,
    offline_grace: float = DEFAULT_OFFLINE_GRACE,
    rewrite: bool = False,
    progress: Callable[[int], None] = lambda _: None,
) -> RepairReport:
    """One pass: survey, repair what is missing, corrupt, long Offline or short; with
    ``rewrite``, then move up to ``limit`` chunks stored under another redundancy than
    the node's to its current one."""
    report = RepairReport(dry_run, survey=survey)
    with node.lock.shared("repair"):
        if survey != SURVEY_NONE:
            survey_replicas(node, report, lambda _: None)
            deep = survey == SURVEY_VERIFY
            report.map_backups = check_map_backups(node, deep=deep, dry_run=dry_run)
        if not dry_run and node.blockmap.stats().backup_copies:
            report.backups_cleaned = _clean_backups(node)
        plan = list(plan_repairs(node, offline_grace).items())[:limit]
        if dry_run:
            for chunk_id, reasons in plan:
                report.actions.append(RepairAction(chunk_id.hex()[:12], dict(reasons)))
                progress(1)
        else:
            _repair_chunks(node, plan, report, max_bytes_per_second, progress)
        if rewrite:
            rewrite_chunks(node, report, limit, progress)
    if report.repaired:
        node.metrics.add(repairs=report.repaired)
    return report


@dataclass
class _Staged:
    """A chunk's new copies, added to packs that are not durable yet."""

    record: ChunkRecord
    action: RepairAction
    keep: list[Replica]
    new: list[Replica]
    needed: int
    to_backup: list[Replica]  # copies on Offline providers: kept as backup locations
    to_drop: list[Replica]  # missing or corrupt copies, dropped once replaced


def _repair_chunks(
    node: Node,
    plan: list[tuple[bytes, dict[str, str]]],
    report: RepairReport,
    max_bytes_per_second: float | None,
    progress: Callable[[int], None],
) -> None:
    """New copies go into packs, as a store's do; only once every pack is durable are the
    chunks' rows swapped (one transaction) and the replaced copies let go."""
    writer = PackWriter(
        node.providers, node.io_pool, node.keys.owner_key, node.settings.pack_target_bytes
    )
    staged: list[_Staged] = []
    started, written = time.monotonic(), 0
    for batch, records in _batches(node, plan):
        rebuilt = _rebuild_fragments(node, records, dict(batch))
        for chunk_id, reasons in batch:
            action = RepairAction(chunk_id.hex()[:12], dict(reasons))
            report.actions.append(action)
            record = records.get(chunk_id)
            if record is None:
                action.error = _GONE
            elif stage := _stage_chunk(
                node, writer, record, reasons, action, rebuilt.get(chunk_id)
            ):
                staged.append(stage)
                written += sum(r.size for r in stage.new)
            progress(1)
            if max_bytes_per_second:  # rate limit: never faster than the configured bytes/s
                ahead = written / max_bytes_per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    failed = {(f.pack.provider, f.pack.key): f.error for f in writer.finish()}
    changes = []
    for stage in staged:
        new = [r for r in stage.new if (r.provider, r.key) not in failed]
        why = "; ".join(  # the disk full, the bucket gone: what the operator must fix
            f"{r.provider}: {failed[r.provider, r.key]}"
            for r in stage.new
            if (r.provider, r.key) in failed
        )
        if not new:
            stage.action.error = f"no new replica could be written ({why})"
            stage.action.cause = NO_TARGET
            continue
        changes.append(
            (
                stage.record,
                replace(
                    stage.record,
                    replicas=tuple(stage.keep + new),
                    backups=stage.record.backups + tuple(stage.to_backup),
                ),
            )
        )
        stage.action.new_replicas = [r.provider for r in new]
        stage.action.cleaned = [r.provider for r in stage.to_drop]
        if len(new) < stage.needed:
            stage.action.error = (
                f"only {len(new)} of {stage.needed} new replicas could be written"
                + (f" ({why})" if why else "")
            )
            stage.action.cause = NO_TARGET
    emptied = node.blockmap.update_chunks(changes)
    # Dropped copies with a blob of their own go now; a pack goes once nothing in it is live.
    own = [r for s in staged if s.action.new_replicas for r in s.to_drop if not r.in_pack]
    delete_quietly(node.providers, own + emptied)
    node.audit.record_many(
        [
            (
                REPAIR,
                "",
                FAILED if a.error else OK,
                {
                    "chunk": a.chunk,
                    "reasons": a.reasons,
                    "new_replicas": a.new_replicas,
                    "cleaned": a.cleaned,
                    "error": a.error,
                },
            )
            for a in report.actions
            if a.error != _GONE
        ]
    )


def _batches(
    node: Node, plan: list[tuple[bytes, dict[str, str]]]
) -> Iterator[tuple[list[tuple[bytes, dict[str, str]]], dict[bytes, ChunkRecord]]]:
    """The plan in batches (``by_size``), each with its chunks' records (one map query
    per ``BATCH`` chunks); a chunk gone from the map has no record."""
    for start in range(0, len(plan), BATCH):
        part = plan[start : start + BATCH]
        records = node.blockmap.get_chunks([chunk_id for chunk_id, _ in part])
        sizes = {chunk_id: record.plain_size for chunk_id, record in records.items()}
        for batch in by_size(part, lambda item: sizes.get(item[0], 0)):  # noqa: B023 (used at once)
            yield batch, {c: records[c] for c, _ in batch if c in records}


def _rebuild_fragments(
    node: Node, records: dict[bytes, ChunkRecord], reasons: dict[bytes, dict[str, str]]
) -> dict[bytes, dict[int, bytes] | MetanodeError]:
    """The missing fragments of the batch's erasure-coded chunks, made from good fragments
    gathered pack by pack for all of them at once (never from the copies being replaced)."""
    wanted = []
    for chunk_id, record in records.items():
        if record.is_erasure_coded:
            bad = {p for p in reasons[chunk_id] if p}
            keep = [r for r in record.replicas if r.provider not in bad]
            wanted.append((record, _missing_fragments(record, keep), bad))
    return node.reader.rebuild_many(wanted) if wanted else {}


def _missing_fragments(record: ChunkRecord, keep: list[Replica]) -> list[int]:
    held = {r.fragment for r in keep}
    return [index for index in range(record.wanted) if index not in held]


def _stage_chunk(
    node: Node,
    writer: PackWriter,
    record: ChunkRecord,
    reasons: dict[str, str],
    action: RepairAction,
    rebuilt: dict[int, bytes] | MetanodeError | None = None,
) -> _Staged | None:
    """Make the pieces the chunk lacks from verified good ones (a replica's frame, or
    fragments rebuilt from K good fragments) and add them to the packs of healthy
    providers that hold no piece of the chunk yet (those with a bad copy last)."""
    bad = {p for p in reasons if p}
    keep = [r for r in record.replicas if r.provider not in bad]
    try:
        pieces = _missing_pieces(node, record, keep, rebuilt)
    except MetanodeError as exc:
        action.error = f"no good copy to repair from: {exc}"
        action.cause = NO_GOOD_COPY if isinstance(exc, IntegrityError) else NO_TARGET
        return None
    targets = providers_for_repair(
        list(node.providers),
        holders={r.provider for r in keep},
        is_offline=node.health.is_offline,
        unusable={p for p, why in reasons.items() if why == "offline"},
        had_bad_copy=bad,
    )
    chunk_key = node.reader.chunk_key(record)
    new = [
        writer.add(
            target,
            record.chunk_id,
            chunk_key,
            blobformat.seal_replica(
                payload,
                chunk_key,
                blobformat.piece_address(record.chunk_id, index),
                node.settings.encryption,
            ),
            index,
        )
        for target, (index, payload) in zip(targets, pieces, strict=False)
    ]
    if not new:
        action.error = "no healthy provider could take a new replica"
        action.cause = NO_TARGET
        return None
    return _Staged(
        record,
        action,
        keep,
        new,
        len(pieces),
        to_backup=[r for r in record.replicas if reasons.get(r.provider) == "offline"],
        to_drop=[r for r in record.replicas if reasons.get(r.provider) in _LOST],
    )


def _missing_pieces(
    node: Node,
    record: ChunkRecord,
    keep: list[Replica],
    rebuilt: dict[int, bytes] | MetanodeError | None,
) -> list[Piece]:
    """The pieces to write so that ``keep`` plus them is whole again, each verified: an
    erasure-coded chunk's absent fragments rebuilt (``rebuilt``, when made for a batch),
    or copies of a replica's frame."""
    if record.is_erasure_coded:
        if rebuilt is None:
            rebuilt, _ = node.reader.rebuild_fragments(record, _missing_fragments(record, keep))
        if isinstance(rebuilt, MetanodeError):
            raise rebuilt
        return list(rebuilt.items())
    plaintext, _ = node.reader.read(record)  # verified against the chunk's address
    frame = blobformat.make_frame(plaintext, node.settings.compression)
    return [(-1, frame)] * (max(record.wanted, len(record.replicas)) - len(keep))


def _clean_backups(node: Node) -> int:
    """Let go of backup copies whose provider answers again, once the chunk is whole: a blob
    of its own is deleted, a packed copy stops counting towards its pack."""
    cleaned = 0
    changes = []
    for record in list(node.blockmap.chunks()):
        if not record.backups or record.is_short:
            continue
        remaining = []
        for backup in record.backups:
            store = node.providers.get(backup.provider)
            try:
                if store is None:
                    raise ProviderError(backup.provider, "not configured")
                if backup.in_pack:
                    store.check_reachable()
                else:
                    store.delete(backup.key)
                cleaned += 1
            except ProviderError:
                remaining.append(backup)
        if len(remaining) != len(record.backups):
            changes.append((record, replace(record, backups=tuple(remaining))))
    delete_quietly(node.providers, node.blockmap.update_chunks(changes))
    return cleaned
