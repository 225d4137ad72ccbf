from __future__ import annotations

import os
from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metanode_storage.audit.merkle import (
    Frontier,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_inclusion,
)
from metanode_storage.audit.note import Checkpoint, NoteInvalid, open_note
from metanode_storage.crypto.signing import NodeSigner


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """The definition in RFC 6962 section 2.1, written as plainly as possible."""
    if not leaves:
        return sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(_rfc6962_root(leaves[:split]), _rfc6962_root(leaves[split:]))


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_frontier_root_matches_the_rfc_definition(items: list[bytes]) -> None:
    leaves = [leaf_hash(i) for i in items]
    assert root_of(leaves) == _rfc6962_root(leaves)


@given(st.integers(1, 60), st.data())
def test_inclusion_proofs_verify_and_reject_other_leaves(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(os.urandom(4)) for _ in range(size)]
    index = data.draw(st.integers(0, size - 1))
    path = inclusion_proof(leaves, index)
    root = root_of(leaves)
    assert verify_inclusion(leaves[index], index, size, path, root)
    assert not verify_inclusion(leaf_hash(b"other"), index, size, path, root)
    if size > 1:
        assert not verify_inclusion(leaves[index], (index + 1) % size, size, path, root)


def test_frontier_refuses_a_size_that_does_not_fit_its_hashes() -> None:
    with pytest.raises(ValueError):
        Frontier(3, [b"x" * 32])


def test_signed_note_round_trip_and_tampering() -> None:
    signer = NodeSigner.generate()
    note = Checkpoint("metanode/n1", 42, os.urandom(32)).sign(signer)
    assert open_note(note, [signer.public_key]).size == 42
    lines = note.split("\n")
    for index in (0, 1, 2):  # origin, size, root
        altered = list(lines)
        altered[index] = altered[index][:-1] + ("A" if altered[index][-1] != "A" else "B")
        with pytest.raises(NoteInvalid):
            open_note("\n".join(altered), [signer.public_key])
    with pytest.raises(NoteInvalid):
        open_note(note, [NodeSigner.generate().public_key])
    with pytest.raises(NoteInvalid):
        open_note("garbage", [signer.public_key])
