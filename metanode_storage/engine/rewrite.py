"""`repair --rewrite`: chunks stored under another redundancy than the node's now
(`distributed redundancy` changed it) are written anew under the current one.

The batching here, bounded in chunks and bytes, is a repair pass's too: what one
batch read holds in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from metanode_storage.audit.trail import FAILED, OK, REPAIR
from metanode_storage.engine.node import Node
from metanode_storage.engine.removal import delete_quietly
from metanode_storage.engine.repair_report import (
    NO_GOOD_COPY,
    NO_TARGET,
    RepairAction,
    RepairReport,
)
from metanode_storage.errors import IntegrityError, MetanodeError, NotEnoughProviders
from metanode_storage.redundancy import Redundancy

BATCH = 256  # chunks read (and rewritten) together: bounds memory
BATCH_BYTES = 16 << 20  # and at most this much plaintext in one batch read
_Item = TypeVar("_Item")


def rewrite_chunks(
    node: Node, report: RepairReport, limit: int, progress: Callable[[int], None]
) -> None:
    """Chunks stored under another redundancy than the node's are read (verified), written
    anew under the current one as a store writes them (a fresh chunk key, new pieces on
    distinct providers), and their rows swapped once the new pieces are durable; only
    then do the old pieces go. Interrupted, a chunk keeps its old pieces, and new packs
    not yet named are orphans for `gc`."""
    scheme = node.settings.scheme
    shape = (scheme.pieces, scheme.needed)
    stale = [r for r in node.blockmap.chunks() if (r.wanted, r.needed) != shape][:limit]
    rewrites: list[RepairAction] = []
    for batch in by_size(stale, lambda record: record.plain_size):
        actions = []
        for record in batch:
            was = Redundancy(record.wanted or len(record.replicas), record.needed).text()
            action = RepairAction(record.chunk_id.hex()[:12], {"": f"rewrite {was}"})
            actions.append(action)
        report.actions += actions
        rewrites += actions
        if report.dry_run:
            progress(len(batch))
            continue
        writer = node.chunk_writer()
        written = []
        read = node.reader.read_many(batch)  # pack by pack; each verified
        for record, action in zip(batch, actions, strict=True):
            try:
                data, _ = read.get(record.chunk_id) or node.reader.read(record)
            except MetanodeError as exc:
                action.error = f"no good copy to rewrite from: {exc}"
                action.cause = NO_GOOD_COPY if isinstance(exc, IntegrityError) else NO_TARGET
                continue
            written.append((record, action, writer.write(record.chunk_id, data)))
            progress(1)
        try:
            durable = writer.finish([new for _, _, new in written])
        except NotEnoughProviders as exc:
            for _, action, _ in written:
                action.error, action.cause = exc.message, NO_TARGET
            break
        changes = []
        for (old, action, _), new in zip(written, durable, strict=True):
            changes.append((old, new))
            action.new_replicas = [r.provider for r in new.replicas]
            action.cleaned = [r.provider for r in old.all_copies]
        emptied = node.blockmap.update_chunks(changes)
        own = [c for old, _ in changes for c in old.all_copies if not c.in_pack]
        delete_quietly(node.providers, own + emptied)
    if not report.dry_run:
        node.audit.record_many(
            [
                (
                    REPAIR,
                    "",
                    FAILED if a.error else OK,
                    {"chunk": a.chunk, "reasons": a.reasons, "new_replicas": a.new_replicas},
                )
                for a in rewrites
            ]
        )


def by_size(items: Sequence[_Item], size: Callable[[_Item], int]) -> Iterator[list[_Item]]:
    """``items`` in batches of at most ``BATCH`` of them and ``BATCH_BYTES``: what one
    batch read holds in memory."""
    batch: list[_Item] = []
    total = 0
    for item in items:
        batch.append(item)
        total += size(item)
        if len(batch) >= BATCH or total >= BATCH_BYTES:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch
