"""One conformance suite for the node's state stores on both backends: the block map,
the audit trail and the QLOCK lease rows, in SQLite files and in a real PostgreSQL
server on 127.0.0.1 (a fresh database per test)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from metanode_storage.audit.trail import AuditTrail
from metanode_storage.blockmap import BlockMap, BlockRecord, ChunkRecord, Replica
from metanode_storage.blockmap.leases import EXCLUSIVE, SHARED, LeaseTable
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.database import DatabaseUrl
from metanode_storage.errors import (
    AmbiguousBlockId,
    AuditTrailDamaged,
    BlockMapDamaged,
    BlockNotFound,
    LeaseLost,
)
from tests.pgserver import PostgresServer

Where = Path | DatabaseUrl
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _fresh(backend: str, request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Where:
    if backend == "sqlite":
        return tmp_path / f"{name}.sqlite"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return DatabaseUrl(server.new_database())


@pytest.fixture
def where(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    return _fresh(backend, request, tmp_path, "map")


@pytest.fixture
def map_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def blockmap(where: Where, map_key: bytes) -> Iterator[BlockMap]:
    opened = BlockMap(where, map_key, create=True)
    yield opened
    opened.close()


def _chunk(chunk_id: bytes | None = None, providers: int = 3) -> ChunkRecord:
    replicas = tuple(Replica(f"location-{i}", os.urandom(16).hex(), 100) for i in range(providers))
    return ChunkRecord(chunk_id or os.urandom(32), 90, "k1", os.urandom(60), replicas)


def _block(block_id: str, chunks: list[ChunkRecord]) -> BlockRecord:
    ids = tuple(c.chunk_id for c in chunks)
    return BlockRecord(block_id, "00" * 32, 90 * len(ids), 1, ids, {}, "sig")


def _raw_rows(where: Where, query: str) -> list[tuple[object, ...]]:
    """Rows read past the store, as the database's operator sees them."""
    if isinstance(where, Path):
        with sqlite3.connect(where) as db:
            return list(db.execute(query))
    with psycopg.connect(where, options="-c search_path=metanode_map") as conn:
        return list(conn.execute(query))


def _raw_execute(where: Where, statement: str, args: tuple[object, ...]) -> None:
    if isinstance(where, Path):
        with sqlite3.connect(where) as db:
            db.execute(statement.replace("%s", "?"), args)
        return
    with psycopg.connect(where, options="-c search_path=metanode_map") as conn:
        conn.execute(statement, args)


# -- the block map ------------------------------------------------------------------------


def test_commit_dedup_delete_and_totals(blockmap: BlockMap) -> None:
    shared, own = _chunk(), _chunk()
    assert blockmap.commit_block(_block("a", [shared, own]), [shared, own]) == []
    spare = blockmap.commit_block(_block("b", [shared]), [_chunk(shared.chunk_id)])
    assert [c.chunk_id for c in spare] == [shared.chunk_id]  # referenced, its copy spare
    stats = blockmap.stats()
    assert (stats.blocks, stats.chunks, stats.replicas, stats.stored_bytes) == (2, 2, 6, 600)
    assert stats.margins == {2: 2}
    released = blockmap.delete_block("a")
    assert [c.chunk_id for c in released.chunks] == [own.chunk_id]
    assert blockmap.get_block("b").chunk_ids == (shared.chunk_id,)
    with pytest.raises(BlockNotFound):
        blockmap.get_block("a")
    stats = blockmap.stats()
    assert (stats.blocks, stats.chunks, stats.logical_bytes) == (1, 1, 90)


def test_block_id_prefixes_compare_bytewise(blockmap: BlockMap) -> None:
    """PostgreSQL's default collation can ignore '-': ids are compared as bytes there too."""
    ids = ["0a1b2c3d-0000-4000-8000-000000000001", "0a1b2c3d-0000-4000-8000-000000000002",
           "0a1b2c3e-0000-4000-8000-000000000003", "0a1b2c3d0-ffff"]  # fmt: skip
    for block_id in ids:
        chunk = _chunk()
        blockmap.commit_block(_block(block_id, [chunk]), [chunk])
    assert blockmap.resolve_block_id("0a1b2c3e") == ids[2]
    assert blockmap.resolve_block_id("0a1b2c3d0") == ids[3]
    with pytest.raises(AmbiguousBlockId):
        blockmap.resolve_block_id("0a1b2c3d-0000")
    assert blockmap.resolve_block_id("0a1b2c3d-0000-4000-8000-000000000002") == ids[1]
    found = blockmap.get_blocks([ids[2], "0a1b2c3e", ids[0], ids[2]])  # whole ids and prefixes
    assert [b.block_id for b in found] == [ids[2], ids[2], ids[0], ids[2]]
    with pytest.raises(BlockNotFound):
        blockmap.get_blocks([ids[0], "0a1b2c3f"])


def test_faults_are_recorded_and_cleared(blockmap: BlockMap) -> None:
    chunk = _chunk()
    blockmap.commit_block(_block("a", [chunk]), [chunk])
    blockmap.record_fault(chunk.chunk_id, "location-1", "missing")
    blockmap.record_fault(chunk.chunk_id, "location-1", "corrupt")  # replaces, not adds
    assert blockmap.faults() == [(chunk.chunk_id, "location-1", "corrupt")]
    assert blockmap.stats().faulty_replicas == 1
    blockmap.clear_fault(chunk.chunk_id, "location-1")
    assert blockmap.faults() == []


def test_rows_are_sealed_and_bound_to_their_key(blockmap: BlockMap, where: Where) -> None:
    one, two = _chunk(), _chunk()
    blockmap.commit_block(_block("a", [one]), [one])
    blockmap.commit_block(_block("b", [two]), [two])
    everything = repr(_raw_rows(where, "SELECT * FROM chunks")) + repr(
        _raw_rows(where, "SELECT * FROM blocks")
    )
    assert "location-" not in everything
    for replica in one.replicas:
        assert replica.key not in everything
    sealed_b = _raw_rows(where, "SELECT sealed FROM blocks WHERE block_id='b'")[0][0]
    _raw_execute(where, "UPDATE blocks SET sealed=%s WHERE block_id='a'", (sealed_b,))
    with pytest.raises(BlockMapDamaged, match="failed authentication"):
        blockmap.get_block("a")


def test_a_missing_map_is_refused_never_made(backend: str, where: Where, map_key: bytes) -> None:
    with pytest.raises(BlockMapDamaged, match="missing"):
        BlockMap(where, map_key)


def test_a_failed_write_leaves_nothing_behind(blockmap: BlockMap) -> None:
    chunk = _chunk()
    blockmap.commit_block(_block("a", [chunk]), [chunk])
    other = _chunk()
    # the same block id again: the insert fails after the chunk rows went in
    with pytest.raises(BlockMapDamaged):
        blockmap.commit_block(_block("a", [other]), [other])
    assert blockmap.get_chunk(other.chunk_id) is None
    assert blockmap.stats().chunks == 1


def test_changes_replay_into_the_other_backend(
    backend: str, blockmap: BlockMap, map_key: bytes, request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:  # fmt: skip
    """What a map backup carries (the change log) restores into either backend."""
    chunks = [_chunk() for _ in range(5)]
    for i, chunk in enumerate(chunks):
        blockmap.commit_block(_block(f"b10c{i:04x}", [chunk]), [chunk])
    blockmap.delete_block("b10c0003")
    blockmap.record_fault(chunks[0].chunk_id, "location-0", "missing")
    mark, changed = blockmap.changes_since(0)
    assert mark > 0 and any(row is None for _, _, row in changed)  # the deletion is carried
    other = "postgresql" if backend == "sqlite" else "sqlite"
    target = BlockMap(_fresh(other, request, tmp_path, "replayed"), map_key, create=True)
    try:
        target.apply_changes(changed)
        assert sorted(b.block_id for b in target.blocks()) == sorted(
            b.block_id for b in blockmap.blocks()
        )
        assert target.stats() == blockmap.stats()
        assert target.faults() == blockmap.faults()
        assert target.changes_since(0)[1] == []  # a fresh history
    finally:
        target.close()
    blockmap.forget_changes(mark)
    assert blockmap.changes_since(mark)[1] == []


def test_a_copy_for_a_snapshot_opens_as_sqlite(
    blockmap: BlockMap, map_key: bytes, tmp_path: Path
) -> None:
    chunks = [_chunk() for _ in range(3)]
    for i, chunk in enumerate(chunks):
        blockmap.commit_block(_block(f"b10c{i:04x}", [chunk]), [chunk])
    blockmap.copy_to(tmp_path / "copy.sqlite")
    copy = BlockMap(tmp_path / "copy.sqlite", map_key)
    try:
        assert [b.block_id for b in copy.blocks()] == [b.block_id for b in blockmap.blocks()]
        assert copy.stats() == blockmap.stats()
        assert copy.change_mark() == blockmap.change_mark()  # segments follow on from here
    finally:
        copy.close()


def test_two_handles_commit_the_same_chunk_at_once(where: Where, map_key: bytes) -> None:
    """Two hosts storing the same bytes at the same moment: one chunk row, two references."""
    BlockMap(where, map_key, create=True).close()
    handles = [BlockMap(where, map_key) for _ in range(4)]
    shared = _chunk()
    spares: list[list[ChunkRecord]] = []
    barrier = threading.Barrier(len(handles))

    def store(i: int) -> None:
        barrier.wait()
        spares.append(handles[i].commit_block(_block(f"b{i}", [shared]), [shared]))

    threads = [threading.Thread(target=store, args=(i,)) for i in range(len(handles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert sorted(len(s) for s in spares) == [0, 1, 1, 1]  # one wrote it, three referenced
        assert handles[0].stats().chunks == 1 and handles[0].stats().blocks == 4
        for i in range(3):
            handles[i].delete_block(f"b{i}")
        assert handles[3].get_chunk(shared.chunk_id) is not None  # the last reference holds
    finally:
        for handle in handles:
            handle.close()


# -- the audit trail ----------------------------------------------------------------------


def test_trail_appends_from_several_handles_form_one_order(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = _fresh(backend, request, tmp_path, "audit")
    signer = NodeSigner.generate()
    AuditTrail(where, "metanode/test", create=True).close()
    handles = [AuditTrail(where, "metanode/test", signer) for _ in range(4)]

    def append(trail: AuditTrail, host: int) -> None:
        for i in range(25):
            trail.append("store", f"host{host}-{i}")
            if i % 10 == 0:
                trail.checkpoint()

    threads = [threading.Thread(target=append, args=(h, i)) for i, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        report = handles[0].verify({signer.key_id: signer.public})
        assert report.ok, report.problems
        # each thread checkpoints at three growing sizes; others may share a size
        assert report.events == 100 and report.checkpoints >= 3
        seqs = [e.seq for e in handles[1].events()]
        assert seqs == list(range(100))
    finally:
        for handle in handles:
            handle.close()


def test_trail_tampering_is_found_and_a_missing_trail_refused(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    where = _fresh(backend, request, tmp_path, "audit")
    with pytest.raises(AuditTrailDamaged, match="missing"):
        AuditTrail(where, "metanode/test")
    signer = NodeSigner.generate()
    trail = AuditTrail(where, "metanode/test", signer, create=True)
    for i in range(5):
        trail.append("store", f"b{i}")
    trail.checkpoint()
    copy = tmp_path / "copy.sqlite"
    trail.copy_to(copy)
    copied = AuditTrail(copy, "metanode/test")
    assert copied.verify({signer.key_id: signer.public}).events == 5
    copied.close()
    if isinstance(where, Path):
        with sqlite3.connect(where) as db:
            db.execute("UPDATE events SET block_id='forged' WHERE seq=2")
    else:
        with psycopg.connect(where, options="-c search_path=metanode_trail") as conn:
            conn.execute("UPDATE events SET block_id='forged' WHERE seq=2")
    report = trail.verify({signer.key_id: signer.public})
    assert not report.ok and "event #2" in report.problems[0]
    trail.close()


# -- QLOCK leases ---------------------------------------------------------------------------


def test_leases_exclude_fence_and_are_taken_over_after_their_deadline(
    where: Where, map_key: bytes, blockmap: BlockMap
) -> None:
    first, second = LeaseTable(where), LeaseTable(where)
    try:
        held, _, _ = first.try_acquire("blocks", EXCLUSIVE, "gc", 0.6, None)
        assert held is not None
        blocked, _, waiter = second.try_acquire("blocks", SHARED, "store", 30, None)
        assert blocked is None and waiter is None
        assert second.holders()[0][0].token == held.token  # every handle sees the lease

        blockmap.fence = lambda: held.token
        chunk = _chunk()
        blockmap.commit_block(_block("a", [chunk]), [chunk])  # the lease stands: allowed
        time.sleep(0.8)  # past its deadline: the next taker drops it
        taken, stale, _ = second.try_acquire("blocks", EXCLUSIVE, "gc", 30, None)
        assert taken is not None and [s.token for s in stale] == [held.token]
        assert taken.token > held.token  # fencing tokens only grow
        other = _chunk()
        with pytest.raises(LeaseLost):
            blockmap.commit_block(_block("b", [other]), [other])
        assert blockmap.get_chunk(other.chunk_id) is None  # the stale holder wrote nothing
        assert not first.renew(held.token, 30)
    finally:
        first.close()
        second.close()
