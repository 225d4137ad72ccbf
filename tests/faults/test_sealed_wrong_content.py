"""A replica that opens under its chunk's key but holds other bytes.

No provider can make one (it would need the chunk's key); only a bug on the writing side
could. A read leaves the chunk's content address to the whole block's SHA-256, so such a
replica must still fail the read before anything is installed, and `verify` must name it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metanode_storage import Node
from metanode_storage.engine import blobformat
from metanode_storage.engine.reader import CORRUPT
from metanode_storage.errors import IntegrityError
from tests.conftest import blob_files


def _reseal_with_other_bytes(home: Path, node: Node, chunk_id: bytes) -> None:
    """Every replica of the chunk, rewritten in place as a valid seal of random bytes."""
    record = node.blockmap.get_chunk(chunk_id)
    assert record is not None
    key = node.reader.chunk_key(record)
    other = os.urandom(record.plain_size)  # random: stored uncompressed, as the original
    for copy in record.replicas:
        sealed = blobformat.seal_replica(
            blobformat.make_frame(other, compress=True), key, chunk_id, encrypt=True
        )
        assert len(sealed) == copy.size
        (path,) = [p for p in blob_files(home) if p.name == copy.key]
        body = bytearray(path.read_bytes())
        body[copy.offset : copy.offset + copy.size] = sealed
        path.write_bytes(bytes(body))


@pytest.mark.parametrize("size", [200_000, 6 * 1024 * 1024], ids=["one chunk", "many chunks"])
def test_a_validly_sealed_wrong_chunk_fails_the_read_and_verify(
    home: Path, node: Node, tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    source = tmp_path / "in.bin"
    source.write_bytes(data)
    block = node.store_file(source)
    chunk_ids = node.blockmap.get_block(block.block_id).chunk_ids
    _reseal_with_other_bytes(home, node, chunk_ids[-1])

    target = tmp_path / "out.bin"
    with pytest.raises(IntegrityError, match="SHA-256"):
        node.retrieve_to_path(block.block_id, target)
    assert not target.exists()  # nothing unverified is installed

    report = node.verify(block.block_id)
    assert not report.ok
    faults = {(f.provider, f.state, f.detail) for f in report.faults}
    assert len(faults) == 3  # every replica, by name
    assert {(state, detail) for _, state, detail in faults} == {
        (CORRUPT, "content address mismatch")
    }


def test_a_validly_sealed_wrong_bundle_fails_a_batch_and_a_tree_restore(
    home: Path, node: Node, tmp_path: Path
) -> None:
    # Batches and trees read bundles pack by pack and leave the bundle's content address
    # to each object's (each file's) own SHA-256: a bundle that opens but holds other
    # bytes must fail there, and no file of the tree may be written from it.
    objects = [(f"o{i}", os.urandom(4096)) for i in range(40)]
    ids = [b.block_id for b in node.store_many(objects)]
    (bundle,) = set(node.blockmap.get_block(ids[0]).chunk_ids)
    _reseal_with_other_bytes(home, node, bundle)
    with pytest.raises(IntegrityError, match="SHA-256"):
        node.retrieve_many(ids)

    source = tmp_path / "tree"
    source.mkdir()
    for i in range(40):
        (source / f"f{i}.bin").write_bytes(os.urandom(4096))
    view, _ = node.store_tree([source])
    chunk_ids = node.blockmap.get_block(view.block_id).chunk_ids
    files = [e for e in node.tree_entries(view.block_id) if e.size]
    assert len(files) == 40
    for bundle in {chunk_ids[e.first_chunk] for e in files}:  # the files' bundles
        _reseal_with_other_bytes(home, node, bundle)
    restored = tmp_path / "restored"
    with pytest.raises(IntegrityError, match="manifest"):
        node.retrieve_tree(view.block_id, restored)
    assert not [p for p in restored.rglob("*.bin")]
