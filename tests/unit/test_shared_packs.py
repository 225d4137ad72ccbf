"""Concurrent stores share packs: one PUT and one fsync for the pieces that meet in a
pack, and a pack that fails moves each store's own pieces, none lost."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from metanode_storage import Node
from metanode_storage.crypto.aead import keyed_hash
from metanode_storage.engine.packs import PackWriter
from metanode_storage.engine.writer import ChunkWriter
from metanode_storage.errors import ProviderError
from metanode_storage.redundancy import Redundancy
from tests.conftest import blob_files
from tests.wrapped_store import PassThrough


class RefusesWrites(PassThrough):
    """A real provider that refuses every upload (a bucket gone read-only)."""

    refused = 0

    def put(self, key: str, data: bytes) -> None:
        self.refused += 1
        raise ProviderError(self.name, "write refused")


def test_concurrent_stores_share_pack_uploads_and_stay_whole(node: Node, home: Path) -> None:
    """As the service stores uploads: a thread each. Fewer pack blobs than stores times
    replicas means stores met in packs (one PUT and one fsync for several)."""
    before = len(blob_files(home))
    payloads = [os.urandom(3_000 + i) for i in range(64)]
    with ThreadPoolExecutor(8) as pool:
        blocks = list(pool.map(node.store_bytes, payloads))
    packs = len(blob_files(home)) - before
    replicas = sum(loc.chunk_replicas for b in blocks for loc in b.distribution_map)
    assert replicas == 3 * len(blocks)
    assert packs < replicas, f"{packs} packs for {replicas} replicas: no pack was shared"
    for block, data in zip(blocks, payloads, strict=True):
        assert node.retrieve_bytes(block.block_id) == data
        assert node.verify(block.block_id).ok


def _address(node: Node, data: bytes) -> bytes:
    return keyed_hash(node.keys.dedup_key.reveal(), data)


def _writer(node: Node, packs: PackWriter, first: str, spare: str) -> ChunkWriter:
    keys = node.keys
    return ChunkWriter(
        node.providers,
        node.io_pool,
        candidates=[first],
        last_resort=[spare],
        redundancy=Redundancy.replicas(1),
        allow_under_replication=False,
        data_key_id=keys.current_data_key,
        data_key=keys.data_key(keys.current_data_key),
        owner_key=keys.owner_key,
        compress=True,
        encrypt=True,
        pack_target_bytes=node.settings.pack_target_bytes,
        packs=packs,
    )


def test_a_shared_pack_that_fails_moves_each_stores_own_pieces(node: Node) -> None:
    """Two writers put a piece each into one provider's open pack; its upload fails.
    Each writer moves its own piece (and only its own) to a spare provider, and each
    piece reads back from there."""
    bad, spare = sorted(node.providers)[:2]
    refusing = RefusesWrites(node.providers[bad])
    node.providers[bad] = refusing
    shared = PackWriter(node.providers, node.io_pool, node.keys.owner_key, 1 << 22)
    first, second = _writer(node, shared, bad, spare), _writer(node, shared, bad, spare)
    data_a, data_b = os.urandom(2000), os.urandom(2000)
    id_a, id_b = _address(node, data_a), _address(node, data_b)
    record_a = first.write(id_a, data_a)
    record_b = second.write(id_b, data_b)
    assert record_a.replicas[0].key == record_b.replicas[0].key  # one pack, on "bad"
    (done_a,) = first.finish([record_a])
    (done_b,) = second.finish([record_b])
    assert refusing.refused == 1  # one upload for both, refused once
    for done, plain in ((done_a, data_a), (done_b, data_b)):
        assert [r.provider for r in done.replicas] == [spare]
        got, checks = node.reader.read(done)
        assert got == plain and not any(c.is_fault for c in checks)


def test_a_discarded_store_leaves_a_pack_it_shares_with_another(node: Node, home: Path) -> None:
    """A store that will not commit removes its packs, but not one holding another
    store's pieces: those would be lost."""
    name = sorted(node.providers)[0]
    shared = PackWriter(node.providers, node.io_pool, node.keys.owner_key, 1 << 22)
    keeping, discarding = _writer(node, shared, name, name), _writer(node, shared, name, name)
    data = os.urandom(1500)
    kept = keeping.write(_address(node, data), data)
    dropped = os.urandom(1500)
    discarding.write(_address(node, dropped), dropped)
    (kept,) = keeping.finish([kept])
    discarding.discard_all()
    assert kept.replicas[0].key in {p.name for p in blob_files(home)}
    assert node.reader.read(kept)[0] == data
    alone = _writer(node, shared, name, name)
    lonely = alone.write(_address(node, dropped), dropped)
    alone.discard_all()
    assert lonely.replicas[0].key not in {p.name for p in blob_files(home)}  # its own: gone
