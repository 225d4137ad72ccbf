"""Small objects of a batch share bundles: each is still a block of its own, read back,
verified, removed and repaired on its own, and a bad bundle is never read as good."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import pytest

from metanode_storage import Node
from metanode_storage.audit.trail import OK, RETRIEVE, VERIFY, VIOLATION
from metanode_storage.blockmap.records import ChunkRecord
from metanode_storage.engine.batch_input import BATCH_BUNDLED_UP_TO, BATCH_BUNDLES, OFFSET
from metanode_storage.engine.integrity import run_integrity_audit
from metanode_storage.engine.repair import repair
from metanode_storage.engine.retrieval import own_bytes
from metanode_storage.errors import IntegrityError
from metanode_storage.providers.base import BlobStore
from tests.conftest import blob_files, flip_a_byte, named_blob_keys
from tests.wrapped_store import PassThrough


def _chunk_of(node: Node, block_id: str) -> ChunkRecord:
    block = node.blockmap.get_block(block_id)
    (chunk_id,) = block.chunk_ids
    record = node.blockmap.get_chunk(chunk_id)
    assert record is not None
    return record


def test_small_objects_share_few_chunks_and_each_reads_back_alone(node: Node) -> None:
    objects = [(f"o{i}", os.urandom(4096)) for i in range(400)]  # 1.6 MiB
    blocks = node.store_many(objects)
    assert len({b.block_id for b in blocks}) == 400
    assert [b.data_hash for b in blocks] == [node.describe(b.block_id).data_hash for b in blocks]
    chunks = node.blockmap.stats().chunks
    assert chunks <= 400 * 4096 // BATCH_BUNDLES.smallest + 1  # not 400
    bundles = {_chunk_of(node, b.block_id).chunk_id for b in blocks}
    assert len(bundles) == chunks
    for index in (0, 1, 199, 399):
        assert node.retrieve_bytes(blocks[index].block_id) == objects[index][1]
    assert node.retrieve_many(b.block_id for b in reversed(blocks)) == [
        data for _, data in reversed(objects)
    ]
    assert node.verify(blocks[7].block_id).ok


def test_a_mixed_batch_keeps_its_order(node: Node) -> None:
    """Large objects, streams, empty objects and equal small ones, in one batch."""
    small = os.urandom(1000)
    objects: list[tuple[str, bytes | io.BytesIO]] = [
        ("small", small),
        ("large", os.urandom(BATCH_BUNDLED_UP_TO + 1)),
        ("empty", b""),
        ("stream", io.BytesIO(b"a stream is never bundled")),
        ("equal", small),
        ("edge", os.urandom(BATCH_BUNDLED_UP_TO)),
    ]
    expected = [d if isinstance(d, bytes) else d.getvalue() for _, d in objects]
    blocks = node.store_many(objects)
    assert [b.name for b in blocks] == [name for name, _ in objects]
    assert node.retrieve_many(b.block_id for b in blocks) == expected
    assert [node.retrieve_bytes(b.block_id) for b in blocks] == expected
    rows = [node.blockmap.get_block(b.block_id) for b in blocks]
    assert [OFFSET in r.extra for r in rows] == [True, False, False, False, True, True]
    assert rows[0].chunk_ids == rows[4].chunk_ids  # equal content laid once
    assert rows[0].extra[OFFSET] == rows[4].extra[OFFSET]


def test_the_same_batch_stored_again_adds_no_chunk(node: Node) -> None:
    objects = [(f"o{i}", os.urandom(3000)) for i in range(200)]
    node.store_many(objects)
    chunks = node.blockmap.stats().chunks
    again = node.store_many(objects)
    assert node.blockmap.stats().chunks == chunks
    assert node.retrieve_many(b.block_id for b in again) == [d for _, d in objects]


def test_removing_blocks_keeps_their_bundle_until_the_last_one_goes(node: Node, home: Path) -> None:
    objects = [(f"o{i}", os.urandom(4096)) for i in range(100)]
    blocks = node.store_many(objects)
    for block in blocks[::2]:
        node.remove(block.block_id)
    assert node.retrieve_many(b.block_id for b in blocks[1::2]) == [d for _, d in objects[1::2]]
    for block in blocks[1::2]:
        node.remove(block.block_id)
    assert node.blockmap.stats().chunks == 0
    node.collect_garbage()
    node.repack()
    assert {p.name for p in blob_files(home)} == named_blob_keys(node)


def test_a_bundle_corrupt_on_two_providers_is_read_from_the_third_and_repaired(
    node: Node, home: Path
) -> None:
    objects = [(f"o{i}", os.urandom(2000)) for i in range(30)]
    blocks = node.store_many(objects)
    record = _chunk_of(node, blocks[0].block_id)
    for copy in record.replicas[:2]:
        flip_a_byte(home, copy, at=60)
    assert node.retrieve_many(b.block_id for b in blocks) == [d for _, d in objects]
    assert len(node.verify(blocks[29].block_id).faults) == 2  # verify checks every copy
    report = repair(node)
    assert report.repaired == 1 and report.failed == 0
    for block in blocks:
        result = node.verify(block.block_id)
        assert result.ok and not result.faults


def test_a_bundle_with_no_good_copy_fails_its_blocks_and_audits_them(
    node: Node, home: Path
) -> None:
    objects = [(f"o{i}", os.urandom(2000)) for i in range(5)]  # one bundle
    blocks = node.store_many(objects)
    for copy in _chunk_of(node, blocks[0].block_id).replicas:
        flip_a_byte(home, copy, at=60)
    with pytest.raises(IntegrityError):
        node.retrieve_many(b.block_id for b in blocks)
    with pytest.raises(IntegrityError):
        node.retrieve_bytes(blocks[3].block_id)
    events = [(e.block_id, e.status) for e in node.audit.trail.events() if e.type == RETRIEVE]
    assert events == [(blocks[0].block_id, VIOLATION), (blocks[3].block_id, VIOLATION)]
    assert not node.verify(blocks[2].block_id).ok
    assert OK not in {status for _, status in events}


def test_a_place_outside_the_bundle_is_refused_not_read_short(node: Node) -> None:
    (block,) = node.store_many([("o", b"x" * 100)])
    row = node.blockmap.get_block(block.block_id)
    bundle = b"y" * 50 + b"x" * 100
    assert own_bytes(replace(row, extra={OFFSET: 50}), bundle) == b"x" * 100
    for bad in (-1, 51, 10**9, "0", None, True):
        with pytest.raises(IntegrityError):
            own_bytes(replace(row, extra={OFFSET: bad}), bundle)
    assert own_bytes(replace(row, extra={}), bundle) == bundle  # a chunk of its own


class _CountsReads(PassThrough):
    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner)
        self.reads = 0

    def get(self, key: str) -> bytes:
        self.reads += 1
        return super().get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.reads += 1
        return super().get_range(key, start, end)


def test_a_full_audit_reads_each_bundle_copy_once_and_reports_every_block(
    node: Node, home: Path
) -> None:
    objects = [(f"o{i}", os.urandom(3000)) for i in range(20)]  # under the smallest bundle
    blocks = node.store_many(objects)
    (bundle,) = {_chunk_of(node, b.block_id).chunk_id for b in blocks}
    record = node.blockmap.get_chunk(bundle)
    assert record is not None
    flip_a_byte(home, record.replicas[0], at=60)
    counting = {name: _CountsReads(store) for name, store in node.providers.items()}
    node.providers.update(counting)
    report = run_integrity_audit(node)
    assert sum(c.reads for c in counting.values()) == 3  # not 60
    assert report.blocks_checked == 20 and report.replicas_checked == 60
    assert {v["block_id"] for v in report.violations} == {b.block_id for b in blocks}
    assert {v["provider"] for v in report.violations} == {record.replicas[0].provider}


def test_a_listing_shows_each_block_as_describe_does(node: Node, tmp_path: Path) -> None:
    """The listing keeps chunk rows and holdings from one view to the next; each view must
    still be the block's own, across bundles, trees, repairs' backups and singles."""
    batch = node.store_many([(f"o{i}", os.urandom(3000)) for i in range(300)])
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "a.txt").write_bytes(b"a" * 10_000)
    tree, _ = node.store_tree([tmp_path / "tree"])
    single = node.store_bytes(os.urandom(200_000), "single")
    record = _chunk_of(node, batch[0].block_id)  # give one bundle a backup copy
    node.blockmap.replace_chunks([replace(record, backups=(record.replicas[0],))])
    listed = list(node.blocks())
    ids = [b.block_id for b in (*batch, tree, single)]
    assert [b.block_id for b in listed] == ids
    assert listed == [node.describe(block_id) for block_id in ids]
    assert any(loc.backup_locations for loc in listed[0].distribution_map)  # the backup shows


@pytest.mark.parametrize("how", ["verify_all", "integrity audit", "quick integrity audit"])
def test_every_verified_block_is_audited_in_few_signed_groups(
    node: Node, home: Path, how: str
) -> None:
    """A run over every block audits each one, in groups of 256 events (one transaction
    and one signature each) rather than a durable transaction per block."""
    blocks = node.store_many([(f"o{i}", os.urandom(2000)) for i in range(300)])
    flip_a_byte(home, _chunk_of(node, blocks[-1].block_id).replicas[0], at=60)
    if how == "verify_all":
        results = list(node.verify_all())
        assert len(results) == 300 and results[-1].faults
    else:
        report = run_integrity_audit(node, quick=how.startswith("quick"))
        assert report.blocks_checked == 300
    trail = node.audit.trail
    verified = list(trail.events(event_type=VERIFY))
    assert sorted(e.block_id for e in verified) == sorted(b.block_id for b in blocks)
    if how != "quick integrity audit":  # a quick check does not read the bytes
        bundle = _chunk_of(node, blocks[-1].block_id).chunk_id
        in_bundle = {b.block_id for b in blocks if _chunk_of(node, b.block_id).chunk_id == bundle}
        assert {e.block_id for e in verified if e.status == VIOLATION} == in_bundle
    bodies = [
        row[0] for row in trail._db.execute("SELECT body FROM events WHERE type = ?", (VERIFY,))
    ]
    assert sum(b'"sig"' in body for body in bodies) == 2  # 256 + 44
    assert trail.verify(node.keys.public_keys()).ok
