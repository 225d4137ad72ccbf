"""Pack files: few blobs for many chunks, rm then gc reclaims space, and a repack never
drops a good copy or copies a bad one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metanode_storage import Node
from metanode_storage.audit.trail import OK, RETRIEVE, VIOLATION
from metanode_storage.engine.batch_input import BATCH_BUNDLED_UP_TO
from metanode_storage.engine.packs import MIN_PACK
from metanode_storage.errors import IntegrityError
from tests.conftest import data_blobs, flip_a_byte, provider_dirs


def _pack_bytes(home: Path) -> int:
    return sum(p.stat().st_size for d in provider_dirs(home) for p in data_blobs(home, d))


def test_many_small_objects_cost_at_most_one_put_per_mib_per_provider(
    node: Node, home: Path
) -> None:
    objects = [(f"f{i}", os.urandom(4096)) for i in range(2000)]  # 8 MiB
    blocks = node.store_many(objects)
    stored_mib = 2000 * 4096 / 2**20
    for provider in provider_dirs(home):
        blobs = data_blobs(home, provider)
        assert 1 <= len(blobs) <= stored_mib  # 8 MiB in about two 4 MiB packs, not 2,000
    for index in (0, 999, 1999):
        assert node.retrieve_bytes(blocks[index].block_id) == objects[index][1]
    assert node.verify(blocks[1234].block_id).ok


def test_a_tiny_file_is_hidden_in_a_padded_pack(node: Node, home: Path) -> None:
    node.store_bytes(b"hello")
    sizes = {p.stat().st_size for d in provider_dirs(home) for p in data_blobs(home, d)}
    assert sizes and min(sizes) >= MIN_PACK


def test_rm_then_gc_rewrites_sparse_packs_and_keeps_the_rest_whole(node: Node, home: Path) -> None:
    objects = [(f"f{i}", os.urandom(200_000)) for i in range(12)]
    blocks = node.store_many(objects)
    before_keys = {p.name for d in provider_dirs(home) for p in data_blobs(home, d)}
    before_bytes = _pack_bytes(home)
    for block in blocks[:10]:
        node.remove(block.block_id)
    assert node.collect_garbage() == {n: 0 for n in node.providers}  # still live packs
    report = node.repack()
    assert sum(report.packs_rewritten.values()) == 3  # one pack per provider
    assert all(v > 1_500_000 for v in report.bytes_reclaimed.values())
    after_keys = {p.name for d in provider_dirs(home) for p in data_blobs(home, d)}
    assert not before_keys & after_keys  # the old packs are gone
    assert _pack_bytes(home) < before_bytes / 4
    for block, (_, data) in zip(blocks[10:], objects[10:], strict=True):
        assert node.retrieve_bytes(block.block_id) == data
        assert node.verify(block.block_id).ok
    assert node.repack().packs_rewritten == {}  # nothing sparse left
    assert node.audit.verify().ok


def test_a_repack_leaves_a_pack_whose_live_copy_is_corrupt(node: Node, home: Path) -> None:
    objects = [(f"f{i}", os.urandom(200_000)) for i in range(6)]
    blocks = node.store_many(objects)
    for block in blocks[1:]:
        node.remove(block.block_id)
    # flip a byte of the one live chunk's copy on the first provider
    record = node.blockmap.get_chunk(node.blockmap.get_block(blocks[0].block_id).chunk_ids[0])
    assert record is not None
    victim = record.replicas[0]
    path = flip_a_byte(home, victim, at=100)
    report = node.repack()
    assert victim.provider not in report.packs_rewritten  # left to repair, not copied
    assert sum(report.packs_rewritten.values()) == 2
    assert path.exists()
    assert node.retrieve_bytes(blocks[0].block_id) == objects[0][1]  # from a good replica


def test_retrieve_many_stops_at_a_block_with_no_good_copy_and_audits_what_it_read(
    node: Node, home: Path
) -> None:
    # each too large for a bundle: a chunk of its own
    objects = [(f"f{i}", os.urandom(BATCH_BUNDLED_UP_TO + 1)) for i in range(4)]
    blocks = node.store_many(objects)
    record = node.blockmap.get_chunk(node.blockmap.get_block(blocks[2].block_id).chunk_ids[0])
    assert record is not None
    for copy in record.replicas:  # every copy of the third block's chunk
        flip_a_byte(home, copy, at=50)
    with pytest.raises(IntegrityError):
        node.retrieve_many(b.block_id for b in blocks)
    events = [(e.block_id, e.status) for e in node.audit.trail.events() if e.type == RETRIEVE]
    assert events == [
        (blocks[0].block_id, OK),
        (blocks[1].block_id, OK),
        (blocks[2].block_id, VIOLATION),
    ]
    assert node.retrieve_many([blocks[3].block_id, blocks[0].block_id]) == [
        objects[3][1],
        objects[0][1],
    ]


def test_a_tree_restored_pack_by_pack_survives_a_corrupt_and_a_missing_pack(
    node: Node, home: Path, tmp_path: Path
) -> None:
    """A tree's small files are read a pack at a time (few range requests); a bundle of
    them whose bytes there fail verification, or a pack that is gone, is read from
    another copy and recorded as a fault, and every restored file is exact."""
    source = tmp_path / "src"
    # 4.8 MB of small files: more than one bundle can hold
    files = {f"d{i % 3}/f{i}": os.urandom(40_000 + i) for i in range(120)}
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    block, _ = node.store_tree([source])
    chunk_ids = node.blockmap.get_block(block.block_id).chunk_ids
    entries = [e for e in node.tree_entries(block.block_id) if e.type == "file"]
    bundles = list(dict.fromkeys(chunk_ids[e.first_chunk] for e in entries))
    assert len(bundles) >= 2
    records = [node.blockmap.get_chunk(c) for c in bundles]
    assert all(r is not None and len(r.replicas) == 3 for r in records)
    # whichever provider the restore prefers, something there is wrong: a bundle's chunk
    # on the first and another's on the third, every pack on the second
    first, gone, third = sorted(r.provider for r in records[0].replicas)  # type: ignore[union-attr]
    for provider, record in ((first, records[0]), (third, records[-1])):
        assert record is not None
        (copy,) = [r for r in record.replicas if r.provider == provider]
        flip_a_byte(home, copy, at=20)
    (pack,) = [p for p in provider_dirs(home) if p.name == gone]
    for blob in data_blobs(home, pack):
        blob.unlink()
    restored = tmp_path / "out"
    node.retrieve_tree(block.block_id, restored)
    for name, data in files.items():
        assert (restored / "src" / name).read_bytes() == data
    assert node.blockmap.stats().faulty_replicas >= 1


def test_a_tree_with_no_good_copy_of_a_file_writes_no_bad_bytes(
    tmp_path: Path,
) -> None:
    from metanode_storage import Secret, init_node
    from tests.conftest import PASSPHRASE, cheap_kdf

    home = tmp_path / "node"
    init_node(home, Secret(PASSPHRASE.encode()), kdf=cheap_kdf(), replication_factor=1)
    source = tmp_path / "src"
    source.mkdir()
    for i in range(40):  # 8 MB of small files: two bundles at least
        (source / f"f{i}").write_bytes(os.urandom(200_000))
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        block, _ = node.store_tree([source])
        chunk_ids = node.blockmap.get_block(block.block_id).chunk_ids
        record = node.blockmap.get_chunk(chunk_ids[0])
        assert record is not None
        flip_a_byte(home, record.replicas[0], at=30)
        in_bad_bundle = {
            e.path.split("/")[-1]
            for e in node.tree_entries(block.block_id)
            if e.type == "file" and e.first_chunk == 0
        }
        assert in_bad_bundle
        with pytest.raises(IntegrityError):
            node.retrieve_tree(block.block_id, tmp_path / "out")
    for path in (tmp_path / "out").rglob("f*"):
        assert path.name not in in_bad_bundle
        assert path.read_bytes() == (source / path.name).read_bytes()  # only good bytes


def test_retrieve_many_reads_packs_together_and_still_fails_over(node: Node, home: Path) -> None:
    """A batch of small blocks is read pack by pack; a corrupt copy on every provider (a
    different block's on each) is still caught, read elsewhere and recorded. The blocks are
    just too large for a batch bundle, so each has a chunk of its own."""
    objects = [(f"f{i}", os.urandom(BATCH_BUNDLED_UP_TO + 1 + i)) for i in range(40)]
    blocks = node.store_many(objects)
    records = [
        node.blockmap.get_chunk(node.blockmap.get_block(b.block_id).chunk_ids[0]) for b in blocks
    ]
    for index, provider in zip((3, 17, 31), sorted(node.providers), strict=True):
        record = records[index]
        assert record is not None
        (copy,) = [r for r in record.replicas if r.provider == provider]
        flip_a_byte(home, copy, at=40)
    assert node.retrieve_many([b.block_id for b in blocks]) == [data for _, data in objects]
    assert node.blockmap.stats().faulty_replicas >= 1
    statuses = {e.block_id: e.status for e in node.audit.trail.events() if e.type == RETRIEVE}
    assert len(statuses) == 40 and VIOLATION in statuses.values()  # the fault is audited
