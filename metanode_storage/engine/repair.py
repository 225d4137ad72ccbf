"""The backup manager's repair pass: restore every chunk to its replication factor.

What needs repair: replicas found missing or corrupt, replicas on providers
that have been Offline longer than a grace period, and chunks stored with
fewer replicas than wanted. A pass does not trust what earlier runs found:
it first surveys the providers itself (``SURVEY_EXISTS``: one listing per
provider, every replica looked up in it; ``SURVEY_VERIFY``: every replica
read and verified), and adds what it finds to the map's fault table, which
retrieves, verifies and integrity audits also feed.

Each is re-created from a verified good copy onto a healthy provider that
does not hold the chunk yet; the chunk's row is then swapped in one
transaction. A replica on an Offline provider is not deleted (it cannot be,
and it may still be good): it becomes a backup location that reads fall
back to, and a later pass deletes it once its provider answers.
A corrupt replica is deleted after its replacement is written. Nothing is
ever deleted unless the chunk has its full set of good replicas elsewhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from metanode_storage.audit.trail import FAILED, OK, REPAIR
from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.engine import blobformat
from metanode_storage.engine.node import Node
from metanode_storage.engine.reader import MISSING
from metanode_storage.engine.writer import put_replica
from metanode_storage.errors import IntegrityError, MetanodeError, ProviderError
from metanode_storage.providers.health import OFFLINE

DEFAULT_OFFLINE_GRACE = 600.0  # seconds Offline before a provider's replicas are replaced
DEFAULT_LIMIT = 1000  # chunks per pass
SURVEY_NONE, SURVEY_EXISTS, SURVEY_VERIFY = "none", "exists", "verify"
# Why a chunk could not be repaired: the data is lost (integrity), or only the
# providers are (an outage: retry later).
NO_GOOD_COPY, NO_TARGET = "no_good_copy", "no_target"


@dataclass
class RepairAction:
    chunk: str  # first 12 hex digits of the chunk's keyed address
    reasons: dict[str, str]  # provider -> missing / corrupt / offline / short
    new_replicas: list[str] = field(default_factory=list)  # providers written to
    cleaned: list[str] = field(default_factory=list)  # providers whose old copy was deleted
    error: str = ""
    cause: str = ""  # NO_GOOD_COPY or NO_TARGET when error is set


@dataclass
class RepairReport:
    dry_run: bool
    actions: list[RepairAction] = field(default_factory=list)
    backups_cleaned: int = 0
    survey: str = SURVEY_NONE
    found_missing: int = 0  # replicas the survey found missing (SURVEY_EXISTS)
    found_bad: int = 0  # replicas the survey found missing or corrupt (SURVEY_VERIFY)
    unsurveyed: list[str] = field(default_factory=list)  # providers that could not be checked

    @property
    def repaired(self) -> int:
        return sum(1 for a in self.actions if a.new_replicas and not a.error)

    @property
    def failed(self) -> int:
        return sum(1 for a in self.actions if a.error)

    @property
    def lost(self) -> int:
        """Chunks with no good copy left anywhere: nothing can heal them."""
        return sum(1 for a in self.actions if a.cause == NO_GOOD_COPY)


def survey_replicas(node: Node, report: RepairReport, progress: Callable[[int], None]) -> None:
    """Look at the providers now and record every missing (or, with SURVEY_VERIFY, corrupt)
    replica in the fault table. A provider that cannot be listed is named in the report."""
    if report.survey == SURVEY_VERIFY:
        for block in node.blockmap.blocks():
            result = node.verify_record(block, progress)
            report.found_bad += len(result.faults)
            report.unsurveyed = sorted(set(report.unsurveyed) | set(result.unreachable))
        return
    listed: dict[str, set[str]] = {}
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
    progress: Callable[[int], None] = lambda _: None,
) -> RepairReport:
    report = RepairReport(dry_run, survey=survey)
    with node.lock.shared("repair"):
        if survey != SURVEY_NONE:
            survey_replicas(node, report, lambda _: None)
        if not dry_run and node.blockmap.stats().backup_copies:
            report.backups_cleaned = _clean_backups(node)
        plan = plan_repairs(node, offline_grace)
        started, written = time.monotonic(), 0
        for chunk_id, reasons in list(plan.items())[:limit]:
            action = RepairAction(chunk_id.hex()[:12], dict(reasons))
            report.actions.append(action)
            record = node.blockmap.get_chunk(chunk_id)
            if record is None:
                action.error = "the chunk is no longer in the map"
            elif not dry_run:
                written += _repair_chunk(node, record, reasons, action)
                node.audit.record(
                    REPAIR,
                    status=FAILED if action.error else OK,
                    detail={
                        "chunk": action.chunk,
                        "reasons": action.reasons,
                        "new_replicas": action.new_replicas,
                        "cleaned": action.cleaned,
                        "error": action.error,
                    },
                )
            progress(1)
            if max_bytes_per_second:  # rate limit: never faster than the configured bytes/s
                ahead = written / max_bytes_per_second - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    if report.repaired:
        node.metrics.add(repairs=report.repaired)
    return report


def _repair_chunk(
    node: Node, record: ChunkRecord, reasons: dict[str, str], action: RepairAction
) -> int:
    """Re-create the chunk's bad replicas; return the bytes written."""
    try:
        plaintext, _ = node.reader.read(record)  # verified against the chunk's address
    except MetanodeError as exc:
        action.error = f"no good copy to repair from: {exc}"
        action.cause = NO_GOOD_COPY if isinstance(exc, IntegrityError) else NO_TARGET
        return 0
    bad = {p for p in reasons if p}
    keep = [r for r in record.replicas if r.provider not in bad]
    moved_to_backup = [r for r in record.replicas if reasons.get(r.provider) == "offline"]
    to_delete = [r for r in record.replicas if reasons.get(r.provider) in ("corrupt", "missing")]
    holders = {r.provider for r in keep}
    targets = [
        name
        for name in node.providers
        if name not in holders
        and not node.health.is_offline(name)
        and reasons.get(name) != "offline"
    ]
    targets.sort(key=lambda name: name in bad)  # prefer providers with no bad copy
    needed = max(record.wanted, len(record.replicas)) - len(keep)
    frame = blobformat.make_frame(plaintext, node.settings.compression)
    chunk_key = node.reader.chunk_key(record)
    new: list[Replica] = []
    for target in targets:
        if len(new) >= needed:
            break
        try:
            new.append(
                put_replica(
                    node.providers[target],
                    frame,
                    chunk_key,
                    record.chunk_id,
                    node.settings.encryption,
                    node.keys.owner_key,
                )
            )
        except ProviderError:
            continue
    if not new:
        action.error = "no healthy provider could take a new replica"
        action.cause = NO_TARGET
        return 0
    updated = replace(
        record, replicas=tuple(keep + new), backups=record.backups + tuple(moved_to_backup)
    )
    node.blockmap.update_chunk(record, updated)
    action.new_replicas = [r.provider for r in new]
    if len(new) < needed:
        action.error = f"only {len(new)} of {needed} new replicas could be written"
        action.cause = NO_TARGET
    for replica in to_delete:  # bad copies, now replaced
        with contextlib.suppress(ProviderError):
            node.providers[replica.provider].delete(replica.key)
            action.cleaned.append(replica.provider)
    return len(frame) * len(new)


def _clean_backups(node: Node) -> int:
    """Delete backup copies whose provider answers again, once the chunk is whole."""
    cleaned = 0
    for record in list(node.blockmap.chunks()):
        if not record.backups or record.is_short:
            continue
        remaining = []
        for backup in record.backups:
            store = node.providers.get(backup.provider)
            try:
                if store is None:
                    raise ProviderError(backup.provider, "not configured")
                store.delete(backup.key)
                cleaned += 1
            except ProviderError:
                remaining.append(backup)
        if len(remaining) != len(record.backups):
            node.blockmap.update_chunk(record, replace(record, backups=tuple(remaining)))
    return cleaned
