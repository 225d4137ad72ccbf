"""Which chunk reads go together: chunks grouped by the pack blob they lie in, and the
runs of a pack close enough to fetch in one range request.

Reading a batch of small blocks or a tree one chunk at a time would cost a request per
chunk; grouped, a pack's chunks cost a few requests (``ChunkReader.read_group``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.engine.placement import batch_rank

_SPAN_GAP = 1 << 20  # bytes of a pack read across rather than paying a second request
_SPAN_MOST = 16 << 20  # one request at most: memory stays bounded
_FRAGMENT_BATCH_BYTES = 16 << 20  # erasure-coded chunks read together: memory stays bounded


@dataclass(frozen=True)
class PackGroup:
    """Chunks to read from one pack blob (their replica there, in offset order), or one
    chunk with no replica in a pack (``None``); with ``fragments``, a batch of
    erasure-coded chunks whose fragments are read pack by pack together."""

    members: list[tuple[Replica | None, ChunkRecord]]
    fragments: bool = False

    def spans(self) -> Iterator[list[tuple[Replica | None, ChunkRecord]]]:
        """Runs of members close enough to fetch in one request."""
        return spans(self.members)


def spans(
    members: Sequence[tuple[Replica | None, ChunkRecord]],
) -> Iterator[list[tuple[Replica | None, ChunkRecord]]]:
    """Runs of ``members`` (of one pack, in offset order) close enough for one request."""
    span: list[tuple[Replica | None, ChunkRecord]] = []
    for replica, record in members:
        if span and not _joins(span[0][0], span[-1][0], replica):
            yield span
            span = []
        span.append((replica, record))
    if span:
        yield span


def _joins(first: Replica | None, last: Replica | None, new: Replica | None) -> bool:
    """Whether ``new`` is fetched in the same request as the span ``first``..``last``."""
    if first is None or last is None or new is None:
        return False
    gap = new.offset - (last.offset + last.size)
    return gap <= _SPAN_GAP and new.offset + new.size - first.offset <= _SPAN_MOST


def pack_groups(
    records: Sequence[ChunkRecord],
    providers: Collection[str],
    is_offline: Callable[[str], bool],
) -> list[PackGroup]:
    """``records`` grouped by the pack blob their preferred replica lies in, each group
    in offset order, so that ``ChunkReader.read_group`` fetches a pack's bytes in few requests.
    The preference is one provider order for the whole call (Offline ones last), so
    chunks written together are read together. Erasure-coded chunks come in batches
    whose fragments ``ChunkReader.read_group`` fetches pack by pack. A chunk with a replica
    outside any pack is a group of its own, read as ``ChunkReader.read`` reads it."""
    rank = batch_rank(providers)
    groups: dict[tuple[str, str], list[tuple[Replica, ChunkRecord]]] = {}
    alone: list[PackGroup] = []
    coded: list[PackGroup] = []
    batch: list[tuple[Replica | None, ChunkRecord]] = []
    batch_bytes = 0
    for record in records:
        if record.is_erasure_coded:
            batch.append((None, record))
            batch_bytes += record.plain_size
            if batch_bytes >= _FRAGMENT_BATCH_BYTES:
                coded.append(PackGroup(batch, fragments=True))
                batch, batch_bytes = [], 0
            continue
        usable = [r for r in record.replicas if r.provider in rank]
        if not usable or not all(r.in_pack for r in usable):
            alone.append(PackGroup([(None, record)]))
            continue
        best = min(usable, key=lambda r: (is_offline(r.provider), rank[r.provider]))
        groups.setdefault((best.provider, best.key), []).append((best, record))
    if batch:
        coded.append(PackGroup(batch, fragments=True))
    packed = []
    for members in groups.values():
        members.sort(key=lambda item: item[0].offset)
        packed.append(PackGroup(list[tuple[Replica | None, ChunkRecord]](members)))
    return packed + coded + alone
