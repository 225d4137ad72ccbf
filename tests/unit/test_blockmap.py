from __future__ import annotations

import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from metanode_storage.blockmap import BlockMap, BlockRecord, ChunkRecord, Replica
from metanode_storage.crypto.batch_proof import BatchedProof, BlockFields, seal_batch
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.errors import BlockMapDamaged, BlockNotFound


def _chunk(chunk_id: bytes) -> ChunkRecord:
    replicas = tuple(Replica(f"location-{i}", os.urandom(16).hex(), 100) for i in range(3))
    return ChunkRecord(chunk_id, 90, "k1", os.urandom(60), replicas)


def _block(block_id: str, chunk_ids: list[bytes]) -> BlockRecord:
    return BlockRecord(block_id, "00" * 32, 90 * len(chunk_ids), 1, tuple(chunk_ids), {}, "sig")


def _file(blockmap: BlockMap) -> Path:
    assert isinstance(blockmap.where, Path)  # these tests look inside the SQLite file
    return blockmap.where


@pytest.fixture
def blockmap(tmp_path: Path) -> BlockMap:
    return BlockMap(tmp_path / "map.sqlite", os.urandom(32), create=True)


def test_commit_read_and_dedup_by_reference(blockmap: BlockMap) -> None:
    shared, own = os.urandom(32), os.urandom(32)
    blockmap.commit_block(_block("a", [shared, own]), [_chunk(shared), _chunk(own)])
    spare = blockmap.commit_block(_block("b", [shared]), [_chunk(shared)])
    assert [c.chunk_id for c in spare] == [shared]  # already stored: the new copy is spare
    assert blockmap.get_block("a").chunk_ids == (shared, own)
    stats = blockmap.stats()
    assert (stats.blocks, stats.chunks, stats.replicas, stats.stored_bytes) == (2, 2, 6, 600)
    assert [c.chunk_id for c in blockmap.delete_block("a").chunks] == [own]
    assert [c.chunk_id for c in blockmap.delete_block("b").chunks] == [shared]
    assert blockmap.stats().chunks == 0
    with pytest.raises(BlockNotFound):
        blockmap.get_block("a")


def test_a_group_naming_one_chunk_many_times_counts_each_block(blockmap: BlockMap) -> None:
    # A batch's blocks share their bundle: one new chunk, named by every block of the
    # group (and again in a later group); it goes only when the last of them goes.
    bundle, later = _chunk(os.urandom(32)), os.urandom(32)
    names = [f"b{i}" for i in range(5)]
    blockmap.commit_blocks(
        [
            (_block(name, [bundle.chunk_id]), [bundle] if i == 0 else [])
            for i, name in enumerate(names)
        ]
    )
    blockmap.commit_blocks(
        [(_block("c0", [bundle.chunk_id, later]), [_chunk(later)]), (_block("c1", [later]), [])]
    )
    for name in [*names, "c0"]:
        released = blockmap.delete_block(name).chunks
        expected = [] if name != "c0" else [bundle.chunk_id]
        assert [c.chunk_id for c in released] == expected, name
    assert [c.chunk_id for c in blockmap.delete_block("c1").chunks] == [later]
    assert blockmap.stats().chunks == 0


def test_nothing_in_clear_names_a_location(blockmap: BlockMap) -> None:
    chunk = _chunk(os.urandom(32))
    blockmap.commit_block(_block("a", [chunk.chunk_id]), [chunk])
    raw = _file(blockmap).read_bytes() + Path(str(_file(blockmap)) + "-wal").read_bytes()
    for replica in chunk.replicas:
        assert replica.key.encode() not in raw
    assert b"location-" not in raw  # long enough never to occur in random bytes


def test_a_row_moved_to_another_key_fails_to_open(blockmap: BlockMap) -> None:
    one, two = _chunk(os.urandom(32)), _chunk(os.urandom(32))
    blockmap.commit_block(_block("a", [one.chunk_id]), [one])
    blockmap.commit_block(_block("b", [two.chunk_id]), [two])
    db = sqlite3.connect(_file(blockmap))
    sealed_b = db.execute("SELECT sealed FROM blocks WHERE block_id='b'").fetchone()[0]
    db.execute("UPDATE blocks SET sealed=? WHERE block_id='a'", (sealed_b,))
    db.commit()
    db.close()
    with pytest.raises(BlockMapDamaged):
        blockmap.get_block("a")


def test_wrong_map_key_cannot_read(tmp_path: Path) -> None:
    path = tmp_path / "map.sqlite"
    chunk = _chunk(os.urandom(32))
    BlockMap(path, os.urandom(32), create=True).commit_block(_block("a", [chunk.chunk_id]), [chunk])
    with pytest.raises(BlockMapDamaged):
        BlockMap(path, os.urandom(32)).get_block("a")


def test_faults_are_counted_and_cleared(blockmap: BlockMap) -> None:
    chunk = _chunk(os.urandom(32))
    blockmap.commit_block(_block("a", [chunk.chunk_id]), [chunk])
    blockmap.record_fault(chunk.chunk_id, "p0", "corrupt")
    blockmap.record_fault(chunk.chunk_id, "p0", "missing")  # same replica: counted once
    assert blockmap.stats().faulty_replicas == 1
    blockmap.clear_fault(chunk.chunk_id, "p0")
    assert blockmap.stats().faulty_replicas == 0


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "map.sqlite"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(BlockMapDamaged):
        BlockMap(path, os.urandom(32))


def _hybrid_blocks(signer: NodeSigner, count: int) -> list[tuple[BlockRecord, ChunkRecord]]:
    chunks = [_chunk(os.urandom(32)) for _ in range(count)]
    fields = [BlockFields("p", f"b{i}", "00" * 32, 90, 1, "11" * 32) for i in range(count)]
    proofs = seal_batch(signer, fields)
    return [
        (replace(_block(f"b{i}", [c.chunk_id]), proof=p.to_dict()), c)
        for i, (p, c) in enumerate(zip(proofs, chunks, strict=True))
    ]


def _seal_rows(blockmap: BlockMap) -> list[tuple[bytes, int]]:
    db = sqlite3.connect(_file(blockmap))
    try:
        return [(bytes(r[0]), r[1]) for r in db.execute("SELECT part_id, refcount FROM seals")]
    finally:
        db.close()


def test_a_batch_keeps_its_ml_dsa_half_once_and_reads_give_it_back(blockmap: BlockMap) -> None:
    signer = NodeSigner.generate(hybrid=True)
    batch = _hybrid_blocks(signer, 20)
    blockmap.commit_blocks([(b, [c]) for b, c in batch])
    # one signature part and one key part, each counted by all 20 blocks
    assert sorted(n for _, n in _seal_rows(blockmap)) == [20, 20]
    db = sqlite3.connect(_file(blockmap))
    row_sizes = [len(r[0]) for r in db.execute("SELECT sealed FROM blocks")]
    db.close()
    assert max(row_sizes) < 2_000  # the 5 KiB ML-DSA half is not in the rows
    trusted = {signer.public.key_id: signer.public}
    for block, _ in batch:
        read = blockmap.get_block(block.block_id)
        assert read.proof == block.proof
        assert BatchedProof.from_dict(read.proof_document).verify(trusted)
    assert [b.proof for b in blockmap.blocks()] == [b.proof for b, _ in batch]
    # a second batch by the same key shares the key part only
    more = _hybrid_blocks(signer, 1)
    more = [(replace(more[0][0], block_id="c0"), more[0][1])]
    blockmap.commit_blocks([(b, [c]) for b, c in more])
    assert sorted(n for _, n in _seal_rows(blockmap)) == [1, 20, 21]
    for block, _ in batch + more:
        blockmap.delete_block(block.block_id)
    assert _seal_rows(blockmap) == []


def test_a_missing_seal_part_is_damage_not_a_weaker_proof(tmp_path: Path) -> None:
    key = os.urandom(32)
    path = tmp_path / "map.sqlite"
    blockmap = BlockMap(path, key, create=True)
    ((block, chunk),) = _hybrid_blocks(NodeSigner.generate(hybrid=True), 1)
    blockmap.commit_block(block, [chunk])
    blockmap.close()
    db = sqlite3.connect(path)
    db.execute("DELETE FROM seals WHERE refcount = 1 AND rowid = (SELECT MIN(rowid) FROM seals)")
    db.commit()
    db.close()
    with pytest.raises(BlockMapDamaged, match="seal part"):
        BlockMap(path, key).get_block(block.block_id)


def test_ed25519_only_proofs_are_kept_whole(blockmap: BlockMap) -> None:
    ((block, chunk),) = _hybrid_blocks(NodeSigner.generate(hybrid=False), 1)
    blockmap.commit_block(block, [chunk])
    assert _seal_rows(blockmap) == []
    assert blockmap.get_block(block.block_id).proof == block.proof


def test_a_full_disk_is_said_to_be_full_not_a_damaged_map(tmp_path: Path) -> None:
    """SQLite's 'database or disk is full' was translated as a damaged map, with the advice
    to recover the node. SQLite's own page limit gives the same error without a full
    disk."""
    from metanode_storage.database.sqlite import SharedConnection, translator
    from metanode_storage.errors import LocalStateError

    path = tmp_path / "map.sqlite"
    db = SharedConnection(
        path, create=True, translate=translator("block map", path, BlockMapDamaged)
    )
    db.execute("CREATE TABLE t (x BLOB)")
    db.execute("PRAGMA max_page_count = 4")
    with pytest.raises(LocalStateError, match="is full; nothing was written") as raised:
        for _ in range(10):
            db.execute("INSERT INTO t VALUES (?)", (os.urandom(4000),))
    assert not isinstance(raised.value, BlockMapDamaged)
    db.close()
