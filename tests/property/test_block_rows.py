"""Version 2 block rows (blockmap/block_rows.py): what goes in comes back, through the map
too, and a row cut short or a proof that does not attest the row is never read as one."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metanode_storage import Node
from metanode_storage.blockmap import BlockMap, BlockRecord, ChunkRecord, Replica, block_rows
from metanode_storage.blockmap.seal_parts import key_label
from metanode_storage.crypto.batch_proof import BatchedProof, BlockFields, seal_batch
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.errors import BlockMapDamaged

_SIGNERS = {True: NodeSigner.generate(hybrid=True), False: NodeSigner.generate(hybrid=False)}

_extra = st.dictionaries(
    st.text(max_size=8), st.one_of(st.integers(), st.text(max_size=8), st.booleans()), max_size=3
) | st.builds(  # a bundled block's place, which rows keep without json when they can
    lambda offset: {"offset": offset}, st.integers() | st.booleans() | st.floats(allow_nan=False)
)
# Names as a POSIX file name reaches Python: any text, and undecodable bytes as lone
# surrogates (surrogateescape).
_name = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)),
    max_size=40,
)
_object = st.tuples(
    _name,
    st.lists(st.binary(min_size=32, max_size=32), max_size=6),  # chunk ids
    st.integers(0, 2**63 - 1),  # size
    _extra,
    st.booleans(),  # encrypted
)


_Object = tuple[str, list[bytes], int, dict[str, Any], bool]


def _batch(objects: list[_Object], hybrid: bool) -> list[BlockRecord]:
    """Blocks as a store signs them: one seal, each proof attesting its own row."""
    ids = [f"{i:08x}-0000-4000-8000-{os.urandom(6).hex()}" for i in range(len(objects))]
    hashes = [os.urandom(32).hex() for _ in objects]
    fields = [
        BlockFields("integrity_authenticity", i, h, size, 1_790_000_000, os.urandom(32).hex())
        for i, h, (_, _, size, _, _) in zip(ids, hashes, objects, strict=True)
    ]
    return [
        BlockRecord(
            block_id=p.block_id,
            data_hash=p.data_hash,
            size=p.size,
            created_at=p.timestamp,
            chunk_ids=tuple(chunks),
            proof=p,
            vm_signature=p.seal.signature_hex,
            name=name,
            encrypted=encrypted,
            extra=extra,
        )
        for p, (name, chunks, _, extra, encrypted) in zip(
            seal_batch(_SIGNERS[hybrid], fields), objects, strict=True
        )
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(_object, min_size=1, max_size=5), st.booleans())
def test_a_v2_row_reads_back_as_the_record_it_was(objects: list[_Object], hybrid: bool) -> None:
    for block in _batch(objects, hybrid):
        _round_trip(block, hybrid)


def _round_trip(block: BlockRecord, hybrid: bool) -> None:
    encoded = block_rows.encode(block)
    assert encoded is not None
    row, parts = encoded
    assert block_rows.is_v2(row)
    assert isinstance(block.proof, BatchedProof)
    seal = block.proof.seal
    assert len(parts) == (2 if hybrid else 1)
    # the seal part back, its ML-DSA key from the key part
    values = {p.label: p.value for p in parts}

    def ml_dsa_key(key_id: str) -> bytes:
        return values[key_label(key_id)]

    back_seal = block_rows.decode_seal(values[block_rows.seal_label(seal.signature)], ml_dsa_key)
    assert back_seal == seal
    back = block_rows.decode(block.block_id, row, lambda _: back_seal)
    assert back == block
    # == takes True for 1 and 1.0 for 1: the extra's values must keep their types
    assert [type(v) for v in back.extra.values()] == [type(v) for v in block.extra.values()]


@settings(max_examples=60, deadline=None)
@given(_object, st.data())
def test_a_row_cut_short_is_refused_not_misread(obj: _Object, data: st.DataObject) -> None:
    (block,) = _batch([obj], False)
    encoded = block_rows.encode(block)
    assert encoded is not None
    row = encoded[0]
    assert isinstance(block.proof, BatchedProof)
    seal = block.proof.seal
    cut = data.draw(st.integers(1, len(row) - 1))
    try:
        back = block_rows.decode(block.block_id, row[:cut], lambda _: seal)
    except ValueError:
        return
    # Only the optional tail (extra) may be missing, and then the record must differ.
    assert back != block


@pytest.mark.parametrize(
    "change",
    [
        {"block_id": "another-id"},
        {"data_hash": "11" * 32},
        {"size": 7},
        {"created_at": 2},
        {"vm_signature": "00" * 64},
        {"chunk_ids": (b"short",)},
    ],
)
def test_a_proof_that_does_not_attest_its_row_keeps_the_v1_form(change: dict[str, Any]) -> None:
    """v2 keeps each field once; a row whose proof says otherwise must keep both copies,
    so that verification still sees the disagreement."""
    (block,) = _batch([("n", [os.urandom(32)], 5, {}, True)], False)
    assert block_rows.encode(replace(block, **change)) is None


def _chunk(chunk_id: bytes) -> ChunkRecord:
    return ChunkRecord(chunk_id, 90, "k1", os.urandom(60), (Replica("p0", "blob", 100, 0),))


def _seal_refcounts(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in db.execute("SELECT refcount FROM seals"))
    finally:
        db.close()


def test_the_map_keeps_a_batch_seal_once_and_frees_it_with_the_last_block() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, key = Path(tmp) / "map.sqlite", os.urandom(32)
        blockmap = BlockMap(path, key, create=True)
        objects = [(f"f{i}", [os.urandom(32)], 4096, {"offset": i}, True) for i in range(30)]
        batch = _batch(objects, True)
        blockmap.commit_blocks([(b, [_chunk(c) for c in b.chunk_ids]) for b in batch])
        # one seal part and one ML-DSA key part, each counted by the 30 blocks
        assert _seal_refcounts(path) == [30, 30]
        db = sqlite3.connect(path)
        sizes = [len(r[0]) for r in db.execute("SELECT sealed FROM blocks")]
        db.close()
        assert max(sizes) < 500  # a v1 row of the same block is about 2 KiB
        blockmap.close()
        reopened = BlockMap(path, key)  # nothing cached: the seal comes from its row
        assert reopened.get_blocks([b.block_id for b in batch]) == batch
        trusted = {_SIGNERS[True].public.key_id: _SIGNERS[True].public}
        assert all(isinstance(b.proof, BatchedProof) and b.proof.verify(trusted) for b in batch)
        for block in batch[:-1]:
            reopened.delete_block(block.block_id)
        assert _seal_refcounts(path) == [1, 1]
        reopened.delete_block(batch[-1].block_id)
        assert _seal_refcounts(path) == []
        reopened.close()


def test_a_missing_batch_seal_is_damage() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, key = Path(tmp) / "map.sqlite", os.urandom(32)
        blockmap = BlockMap(path, key, create=True)
        (block,) = _batch([("f", [os.urandom(32)], 1, {}, True)], False)
        blockmap.commit_block(block, [_chunk(block.chunk_ids[0])])
        blockmap.close()
        db = sqlite3.connect(path)
        db.execute("DELETE FROM seals")
        db.commit()
        db.close()
        with pytest.raises(BlockMapDamaged, match="seal part"):
            BlockMap(path, key).get_block(block.block_id)


def test_a_map_written_with_v1_rows_still_reads_verifies_and_exports(node: Node) -> None:
    """Maps written before v2 rows keep their JSON rows (nothing migrates them): rewrite a
    node's rows as the old writer did, ML-DSA halves apart, and use them end to end."""
    objects = [(f"f{i}", os.urandom(3000)) for i in range(4)]
    blocks = node.store_many(objects)
    blockmap = node.blockmap
    with blockmap._write() as db:
        for view in blocks:
            record = blockmap.get_block(view.block_id)
            as_v1 = replace(record, proof=record.proof_document)
            plain, parts = blockmap._row_of(as_v1)
            assert plain.startswith(b"{")  # JSON: the old form
            blockmap._seals.count(db, [parts], +1)
            db.execute(
                "UPDATE blocks SET sealed=? WHERE block_id=?",
                (blockmap._seal("blocks", record.block_id.encode(), plain), record.block_id),
            )
    reopened = BlockMap(blockmap.where, blockmap._key)  # nothing cached from the v2 rows
    assert all(isinstance(reopened.get_block(b.block_id).proof, dict) for b in blocks)
    reopened.close()
    assert node.retrieve_many([b.block_id for b in blocks]) == [data for _, data in objects]
    assert all(node.verify(b.block_id).ok for b in blocks)
    (exported,) = node.export_proofs([blocks[0].block_id])
    assert exported["proof"]["block_id"] == blocks[0].block_id


def test_a_seal_part_swapped_for_another_batchs_is_damage() -> None:
    """A seal part re-sealed under another seal's name (a writer holding the map key, or
    a bug) must not lend its root to the blocks that name the other seal."""
    with tempfile.TemporaryDirectory() as tmp:
        path, key = Path(tmp) / "map.sqlite", os.urandom(32)
        blockmap = BlockMap(path, key, create=True)
        (first,) = _batch([("a", [os.urandom(32)], 1, {}, True)], False)
        (second,) = _batch([("b", [os.urandom(32)], 2, {}, True)], False)
        for block in (first, second):
            blockmap.commit_block(block, [_chunk(block.chunk_ids[0])])
        assert isinstance(first.proof, BatchedProof) and isinstance(second.proof, BatchedProof)
        first_id = blockmap._seals.part_id(block_rows.seal_label(first.proof.seal.signature))
        second_id = blockmap._seals.part_id(block_rows.seal_label(second.proof.seal.signature))
        with blockmap._write() as db:
            (sealed,) = db.execute(
                "SELECT sealed FROM seals WHERE part_id=?", (second_id,)
            ).fetchone()
            other = blockmap._unseal("seals", second_id, sealed)
            db.execute(
                "UPDATE seals SET sealed=? WHERE part_id=?",
                (blockmap._seal("seals", first_id, other), first_id),
            )
        blockmap.close()
        reopened = BlockMap(path, key)
        with pytest.raises(BlockMapDamaged, match="another seal"):
            reopened.get_block(first.block_id)
        assert reopened.get_block(second.block_id) == second
        reopened.close()


def test_a_file_whose_name_is_not_utf_8_is_stored_and_named_as_given(
    node: Node, tmp_path: Path
) -> None:
    path = tmp_path / os.fsdecode(b"\xff-report.bin")
    path.write_bytes(b"report")
    block = node.store_file(path)
    assert block.name == os.fsdecode(b"\xff-report.bin")
    assert node.blockmap.get_block(block.block_id).name == block.name
    assert node.retrieve_bytes(block.block_id) == b"report"
