"""The totals the block map keeps (blocks, bytes, chunks, replicas, margins), kept exact
by every commit, so `status` and `metrics` read them instead of counting rows; a map
written before all of them were kept is recounted once (BlockMap.recount_totals).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from metanode_storage.blockmap.records import ChunkRecord
from metanode_storage.database import Database

NAMES = (
    "blocks",
    "logical_bytes",
    "chunks",
    "replicas",
    "stored_bytes",
    "short_chunks",
    "backup_copies",
    "unique_bytes",
    "copy_bytes",
)
MARGIN = "margin:"  # totals "margin:N": chunks that survive N more lost providers
VERSION = "2"  # totals kept since unique_bytes, copy_bytes and the margins


@dataclass(frozen=True)
class MapStats:
    blocks: int
    logical_bytes: int
    chunks: int
    replicas: int
    stored_bytes: int
    short_chunks: int  # chunks stored with fewer replicas than their replication factor
    backup_copies: int  # replaced replicas kept as backup locations until cleaned up
    unique_bytes: int  # plaintext bytes of the distinct chunks: logical bytes after dedup
    copy_bytes: int  # provider bytes of one copy of each chunk: after compression and sealing
    faulty_replicas: int
    margins: dict[int, int] = field(default_factory=dict)  # lost providers survivable: chunks

    @property
    def least_margin(self) -> int | None:
        """Lost providers every chunk survives as stored (faults and outages aside)."""
        return min((m for m, count in self.margins.items() if count > 0), default=None)


def of_chunks(records: Iterable[ChunkRecord], sign: int = 1) -> dict[str, int]:
    """What ``records`` add to the totals (``sign`` -1: what they take away). Plain sums:
    a tree of 20,000 files commits 20,000 rows at once."""
    chunks = replicas = stored = short = backups = unique = copy = 0
    margins: Counter[int] = Counter()
    for r in records:
        chunks += 1
        replicas += len(r.replicas)
        stored += r.stored_size
        short += r.is_short
        backups += len(r.backups)
        unique += r.plain_size
        copy += r.copy_size
        margins[r.margin] += 1
    totals = {
        "chunks": chunks,
        "replicas": replicas,
        "stored_bytes": stored,
        "short_chunks": short,
        "backup_copies": backups,
        "unique_bytes": unique,
        "copy_bytes": copy,
        **{f"{MARGIN}{margin}": count for margin, count in margins.items()},
    }
    return {name: sign * value for name, value in totals.items()}


def add(db: Database, deltas: Mapping[str, int]) -> None:
    """Add ``deltas`` to the totals, inside the caller's transaction."""
    db.executemany(
        "INSERT INTO totals VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = totals.value + excluded.value",
        [(name, delta) for name, delta in deltas.items() if delta],
    )


def read_stats(db: Database) -> MapStats:
    kept = dict(db.execute("SELECT name, value FROM totals").fetchall())
    faults = db.execute("SELECT COUNT(*) FROM faults").fetchone()[0]
    margins = {
        int(name[len(MARGIN) :]): int(count)
        for name, count in kept.items()
        if name.startswith(MARGIN) and count
    }
    return MapStats(
        **{name: int(kept.get(name, 0)) for name in NAMES},
        faulty_replicas=int(faults),
        margins=margins,
    )
