from __future__ import annotations

import os
from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metanode_storage.audit import merkle
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
    assert open_note(note, [signer.public]).size == 42
    lines = note.split("\n")
    for index in (0, 1, 2):  # origin, size, root
        altered = list(lines)
        altered[index] = altered[index][:-1] + ("A" if altered[index][-1] != "A" else "B")
        with pytest.raises(NoteInvalid):
            open_note("\n".join(altered), [signer.public])
    with pytest.raises(NoteInvalid):
        open_note(note, [NodeSigner.generate().public])
    with pytest.raises(NoteInvalid):
        open_note("garbage", [signer.public])


# The RFC 6962 reference vectors (certificate-transparency's merkle tree tests): eight
# leaves, the roots of their prefixes, and consistency proofs between tree sizes.
_VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]  # fmt: skip
_VECTOR_ROOTS = {
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
_VECTOR_PROOFS = {
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}


def test_rfc6962_roots_and_consistency_proofs_match_the_reference_vectors() -> None:
    leaves = [merkle.leaf_hash(x) for x in _VECTOR_LEAVES]
    for size, root in _VECTOR_ROOTS.items():
        assert merkle.root_of(leaves[:size]).hex() == root
    for (old, new), expected in _VECTOR_PROOFS.items():
        proof = merkle.consistency_proof(leaves[:new], old)
        assert [p.hex() for p in proof] == expected
        old_root, new_root = bytes.fromhex(_VECTOR_ROOTS[old]), bytes.fromhex(_VECTOR_ROOTS[new])
        assert merkle.verify_consistency(old, new, proof, old_root, new_root)
        assert not merkle.verify_consistency(old, new, proof, new_root, new_root) or old == new
        if proof:
            bent = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
            assert not merkle.verify_consistency(old, new, bent, old_root, new_root)


@given(st.integers(min_value=1, max_value=70), st.data())
def test_consistency_proofs_for_every_pair_of_sizes(new: int, data: st.DataObject) -> None:
    old = data.draw(st.integers(min_value=1, max_value=new))
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(new)]
    proof = merkle.consistency_proof(leaves, old)
    old_root, new_root = merkle.root_of(leaves[:old]), merkle.root_of(leaves)
    assert merkle.verify_consistency(old, new, proof, old_root, new_root)
    forked = [*leaves[: old - 1], merkle.leaf_hash(b"changed"), *leaves[old:]]
    assert not merkle.verify_consistency(old, new, proof, old_root, merkle.root_of(forked))
