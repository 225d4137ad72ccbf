"""Integrity audits for cron: check replicas on every provider, all blocks or a sample.

A full check fetches each replica and verifies it completely (AES-GCM tag,
frame, size, keyed content address). ``quick`` only asks each provider for
each replica's size, which catches missing and truncated blobs without
downloading anything. A byte range cannot be checked on its own: each blob
is sealed whole under AES-GCM, whose tag covers every byte (see
docs/AUDIT.md for the design that would allow it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from metanode_storage.audit.trail import FAILED, OK, VERIFY
from metanode_storage.blockmap.records import Replica
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.engine.maintenance import check_map_backups
from metanode_storage.engine.node import Node
from metanode_storage.engine.reader import (
    CORRUPT,
    GOOD,
    MISSING,
    UNCONFIGURED,
    UNREACHABLE,
    ReplicaCheck,
)
from metanode_storage.engine.verification import BlockVerification
from metanode_storage.errors import ObjectNotFound, ProviderError
from metanode_storage.providers.base import BlobStore


@dataclass
class IntegrityReport:
    mode: str  # "full" or "quick"
    blocks_total: int
    blocks_checked: int = 0
    replicas_checked: int = 0
    violations: list[dict[str, str]] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    # provider -> what was wrong with its map backup log (written anew at once: it is the
    # node's own state, and a fresh snapshot replaces it whole)
    map_backups: dict[str, str] = field(default_factory=dict)

    def add(self, result: BlockVerification) -> None:
        self.blocks_checked += 1
        self.replicas_checked += result.replicas_checked
        for fault in result.faults:
            self.violations.append(
                {
                    "block_id": result.block_id,
                    "provider": fault.provider,
                    "state": fault.state,
                    "detail": fault.detail,
                }
            )
        if result.error and not result.faults:
            self.violations.append(
                {
                    "block_id": result.block_id,
                    "provider": "",
                    "state": "unreadable",
                    "detail": result.error,
                }
            )
        self.unreachable = sorted(set(self.unreachable) | set(result.unreachable))

    @property
    def data_integrity_percent(self) -> float | None:
        if not self.replicas_checked:
            return None
        bad = sum(1 for v in self.violations if v["provider"])
        return 100.0 * (self.replicas_checked - bad) / self.replicas_checked


def quick_check(
    block_id: str,
    chunk_ids: Iterable[bytes],
    blockmap: BlockMap,
    providers: dict[str, BlobStore],
    io_pool: Executor,
) -> BlockVerification:
    """Every piece present, its blob long enough to hold it (a pack's size is asked once);
    no download. The block counts as readable while every chunk has the pieces it needs."""
    faults: list[ReplicaCheck] = []
    unreachable: set[str] = set()
    checked = short = 0
    sizes: dict[tuple[str, str], Future[int | str]] = {}
    for chunk_id in dict.fromkeys(chunk_ids):
        record = blockmap.get_chunk(chunk_id)
        if record is None:
            return BlockVerification(block_id, False, checked, error="chunk missing from map")
        for r in record.replicas:
            if (r.provider, r.key) not in sizes:
                store = providers.get(r.provider)
                sizes[(r.provider, r.key)] = io_pool.submit(_blob_size, store, r.key)
        present = 0  # good, or out of reach (not known bad)
        for replica in record.replicas:
            checked += 1
            state = _size_state(sizes[(replica.provider, replica.key)].result(), replica)
            if state in (MISSING, CORRUPT, UNCONFIGURED):
                faults.append(ReplicaCheck(replica.provider, state, "size check"))
                blockmap.record_fault(chunk_id, replica.provider, state)
            else:
                present += 1
                if state == UNREACHABLE:
                    unreachable.add(replica.provider)
        short += present < record.needed
    error = f"{short} chunk(s) lack the pieces to be read" if short else ""
    return BlockVerification(block_id, not short, checked, faults, sorted(unreachable), error)


def _blob_size(store: BlobStore | None, key: str) -> int | str:
    """The blob's size, or MISSING / UNREACHABLE / UNCONFIGURED."""
    if store is None:
        return UNCONFIGURED
    try:
        return store.size(key)
    except ObjectNotFound:
        return MISSING
    except ProviderError:
        return UNREACHABLE


def _size_state(size: int | str, replica: Replica) -> str:
    if isinstance(size, str):
        return size
    if replica.in_pack:  # a pack holds the piece's bytes at its offset, then padding
        return GOOD if size >= replica.offset + replica.size else CORRUPT
    return GOOD if size == replica.size else CORRUPT


def run_integrity_audit(
    node: Node,
    sample: int | None = None,
    quick: bool = False,
    progress: Callable[[int], None] = lambda _: None,
) -> IntegrityReport:
    """Check ``sample`` blocks (least recently audited first) or all. Faults found go to the
    map's fault table, which feeds `status` and repair. ``progress`` gets 1 per block."""
    blockmap = node.blockmap
    total = blockmap.stats().blocks
    report = IntegrityReport("quick" if quick else "full", total)
    with node.lock.shared("audit integrity"):
        chosen = blockmap.least_recently_audited(total if sample is None else sample)
        checked: dict[bytes, list[ReplicaCheck]] = {}  # a shared chunk is downloaded once
        with node.audit.in_groups() as record:
            for block_id in chosen:
                block = blockmap.get_block(block_id)
                if quick:
                    result = quick_check(
                        block_id, block.chunk_ids, blockmap, node.providers, node.io_pool
                    )
                    detail = {**result.audit_detail(), "mode": "quick"}
                    record((VERIFY, block_id, result.audit_status, detail))
                else:
                    result = node.verify_record(block, lambda _: None, checked, record)
                report.add(result)
                progress(1)
        # only once every event is in the trail: a run cut short leaves them unaudited
        blockmap.mark_audited(chosen)
        # a full audit reads the backups whole; a sample or a quick one asks their sizes
        report.map_backups = check_map_backups(node, deep=not quick and sample is None)
    # The per-block verify events carry the violations; this one summarises the run
    # (counting its violations again would double the trail's violation count).
    node.audit.record(
        "integrity_audit",
        status=FAILED if report.unreachable else OK,
        detail={
            "mode": report.mode,
            "blocks_checked": report.blocks_checked,
            "replicas_checked": report.replicas_checked,
            "violations": len(report.violations),
            "unreachable": report.unreachable,
            "map_backups": report.map_backups,
        },
    )
    return report
