from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from metanode_storage.blockmap import BlockMap, BlockRecord, ChunkRecord, Replica
from metanode_storage.errors import BlockMapDamaged, BlockNotFound


def _chunk(chunk_id: bytes) -> ChunkRecord:
    replicas = tuple(Replica(f"location-{i}", os.urandom(16).hex(), 100) for i in range(3))
    return ChunkRecord(chunk_id, 90, "k1", os.urandom(60), replicas)


def _block(block_id: str, chunk_ids: list[bytes]) -> BlockRecord:
    return BlockRecord(block_id, "00" * 32, 90 * len(chunk_ids), 1, tuple(chunk_ids), {}, "sig")


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


def test_nothing_in_clear_names_a_location(blockmap: BlockMap) -> None:
    chunk = _chunk(os.urandom(32))
    blockmap.commit_block(_block("a", [chunk.chunk_id]), [chunk])
    raw = blockmap.path.read_bytes() + Path(str(blockmap.path) + "-wal").read_bytes()
    for replica in chunk.replicas:
        assert replica.key.encode() not in raw
    assert b"location-" not in raw  # long enough never to occur in random bytes


def test_a_row_moved_to_another_key_fails_to_open(blockmap: BlockMap) -> None:
    one, two = _chunk(os.urandom(32)), _chunk(os.urandom(32))
    blockmap.commit_block(_block("a", [one.chunk_id]), [one])
    blockmap.commit_block(_block("b", [two.chunk_id]), [two])
    db = sqlite3.connect(blockmap.path)
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
