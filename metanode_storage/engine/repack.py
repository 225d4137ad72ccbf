"""Rewriting packs that are mostly dead bytes (after `rm`, or chunks another run wrote).

A pack whose live chunks fill less than ``repack_below`` of it is rewritten: each live
chunk's copy is read and fully verified, re-sealed (fresh nonce) into a new pack on the
same provider, the map is pointed at the new copy, and only then is the old pack
deleted. A chunk whose copy does not verify keeps the pack alive (that is repair's
work), so a repack never drops a good copy and never copies a bad one. Interrupted at
any point, the old pack is still named by the map; a new pack not yet named is an
orphan that the next `gc` deletes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, replace

from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.engine import blobformat
from metanode_storage.engine.packs import PackWriter
from metanode_storage.engine.reader import GOOD, ChunkReader
from metanode_storage.errors import ProviderError
from metanode_storage.providers.base import BlobStore

PackId = tuple[str, str]  # (provider, blob key)


@dataclass(frozen=True)
class RepackReport:
    packs_rewritten: dict[str, int]  # per provider
    bytes_reclaimed: dict[str, int]  # dead bytes (and padding) the rewritten packs held


def live_packs(blockmap: BlockMap) -> dict[PackId, list[tuple[bytes, Replica]]]:
    """Every pack the map names, with the (chunk id, replica) copies it still holds."""
    packs: dict[PackId, list[tuple[bytes, Replica]]] = defaultdict(list)
    for record in blockmap.chunks():
        for copy in record.all_copies:
            if copy.in_pack:
                packs[(copy.provider, copy.key)].append((record.chunk_id, copy))
    return packs


def repack(
    blockmap: BlockMap,
    providers: Mapping[str, BlobStore],
    reader: ChunkReader,
    io_pool: Executor,
    *,
    owner_key: bytes,
    compress: bool,
    encrypt: bool,
    target_bytes: int,
    repack_below: float,
    dry_run: bool = False,
) -> RepackReport:
    """Rewrite the packs under the threshold (the caller holds the exclusive lock)."""
    packs = live_packs(blockmap)
    sizes = dict(zip(packs, io_pool.map(lambda pack: _size(providers, pack), packs), strict=True))
    sparse = [
        pack
        for pack, copies in packs.items()
        if sizes[pack] > 0 and sum(c.size for _, c in copies) < repack_below * sizes[pack]
    ]
    rewritten: dict[str, int] = defaultdict(int)
    freed: dict[str, int] = defaultdict(int)
    if dry_run:
        for provider, key in sparse:
            rewritten[provider] += 1
            freed[provider] += _dead_bytes(sizes[(provider, key)], packs[(provider, key)])
        return RepackReport(dict(rewritten), dict(freed))
    writer = PackWriter(providers, io_pool, owner_key, target_bytes)
    moved: dict[PackId, list[tuple[bytes, Replica, Replica]]] = {}
    for pack in sparse:
        copies = []
        for chunk_id, copy in packs[pack]:
            record = blockmap.get_chunk(chunk_id)
            if record is None:
                break
            check, data = reader.check_replica(record, copy)
            if check.state != GOOD or data is None:
                break  # a bad copy: leave the pack to repair
            chunk_key = reader.chunk_key(record)
            # A fragment is re-sealed as it is; a replica's plaintext is framed again.
            piece = data if copy.is_fragment else blobformat.make_frame(data, compress)
            address = blobformat.piece_address(chunk_id, copy.fragment)
            sealed = blobformat.seal_replica(piece, chunk_key, address, encrypt)
            new = writer.add(pack[0], chunk_id, chunk_key, sealed, copy.fragment)
            copies.append((chunk_id, copy, new))
        else:
            moved[pack] = copies
    failed = {(f.pack.provider, f.pack.key) for f in writer.finish()}
    for pack, copies in moved.items():
        if any((new.provider, new.key) in failed for _, _, new in copies):
            continue  # the old pack stays; the new one is an orphan for the next gc
        changes = []
        for chunk_id, old, new in copies:
            record = blockmap.get_chunk(chunk_id)
            if record is not None:
                changes.append((record, _swap(record, old, new)))
        blockmap.update_chunks(changes)  # the pack's chunks repointed in one transaction
        try:
            providers[pack[0]].delete(pack[1])
        except ProviderError:
            continue  # no longer named by the map: an orphan for the next gc
        rewritten[pack[0]] += 1
        freed[pack[0]] += _dead_bytes(sizes[pack], packs[pack])
    return RepackReport(dict(rewritten), dict(freed))


def _dead_bytes(size: int, copies: list[tuple[bytes, Replica]]) -> int:
    return size - sum(copy.size for _, copy in copies)


def _swap(record: ChunkRecord, old: Replica, new: Replica) -> ChunkRecord:
    return replace(
        record,
        replicas=tuple(new if r == old else r for r in record.replicas),
        backups=tuple(new if r == old else r for r in record.backups),
    )


def _size(providers: Mapping[str, BlobStore], pack: PackId) -> int:
    """The pack's size, or 0 when it cannot be told now (then it is left alone)."""
    store = providers.get(pack[0])
    if store is None:
        return 0
    try:
        return store.size(pack[1])
    except ProviderError:
        return 0
