"""Batched proofs: the tree is RFC 6962's, every proof checks alone, and what the
verifier remembers never lets a bent proof through."""

from __future__ import annotations

import dataclasses
import struct
from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from metanode_storage.audit import merkle
from metanode_storage.crypto import batch_proof, signing
from metanode_storage.crypto.batch_proof import (
    BatchedProof,
    BlockFields,
    ProofVerifier,
    seal_batch,
)
from metanode_storage.crypto.signing import NodeSigner

SIGNER = NodeSigner.generate()
TRUSTED = {SIGNER.key_id: SIGNER.public}


def _fields(i: int) -> BlockFields:
    return BlockFields(
        "integrity_authenticity",
        f"block-{i}",
        sha256(b"data %d" % i).hexdigest(),
        i * 100,
        1_790_000_000 + i,
        sha256(b"manifest %d" % i).hexdigest(),
    )


def _independent_check(doc: dict[str, object], public_key: bytes) -> bool:
    """A third party's check, written from docs/PROOFS.md alone: hashlib, PyNaCl and the
    RFC 9162 inclusion check, none of this program's proof code."""

    def text(value: object) -> bytes:
        raw = str(value).encode()
        return struct.pack(">H", len(raw)) + raw

    record = (
        b"metanode/proof/v2\n"
        + text(doc["proof_type"])
        + text(doc["block_id"])
        + bytes.fromhex(str(doc["data_hash"]))
        + struct.pack(">QQ", doc["size"], doc["timestamp"])
        + bytes.fromhex(str(doc["manifest_hash"]))
    )
    leaf = sha256(b"\x00" + record).digest()
    path = [bytes.fromhex(h) for h in doc["inclusion_path"]]  # type: ignore[attr-defined]
    root = bytes.fromhex(str(doc["root"]))
    size = int(doc["tree_size"])  # type: ignore[call-overload]
    if not merkle.verify_inclusion(leaf, int(doc["leaf_index"]), size, path, root):  # type: ignore[call-overload]
        return False
    message = b"metanode/proof-batch/v1\n" + struct.pack(">Q", size) + root
    try:
        VerifyKey(public_key).verify(message, bytes.fromhex(str(doc["signature"])))
    except Exception:
        return False
    return True


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 300), st.data())
def test_the_tree_and_paths_are_rfc_6962s(size: int, data: st.DataObject) -> None:
    proofs = seal_batch(SIGNER, [_fields(i) for i in range(size)])
    leaves = [batch_proof.leaf_hash_of(p.fields) for p in proofs]
    assert proofs[0].seal.root == merkle.root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    assert list(proofs[index].path) == merkle.inclusion_proof(leaves, index)
    assert _independent_check(proofs[index].to_dict(), SIGNER.public_key)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 200), st.randoms(use_true_random=False))
def test_every_proof_verifies_in_any_order_with_one_signature_check(size: int, rng: object) -> None:
    proofs = seal_batch(SIGNER, [_fields(i) for i in range(size)])
    rng.shuffle(proofs)  # type: ignore[attr-defined]
    verifier = ProofVerifier(TRUSTED)
    assert all(verifier.verify(p) for p in proofs)
    assert all(BatchedProof.from_dict(p.to_dict()) == p for p in proofs)


def test_a_batch_costs_one_signature_check(monkeypatch: pytest.MonkeyPatch) -> None:
    checks: list[bytes] = []
    real = signing.verify_signature

    def counting(key: bytes, message: bytes, signature: bytes) -> bool:
        checks.append(message)
        return real(key, message, signature)

    monkeypatch.setattr(signing, "verify_signature", counting)
    verifier = ProofVerifier(TRUSTED)
    for batch in range(3):
        proofs = seal_batch(SIGNER, [_fields(batch * 1000 + i) for i in range(1000)])
        assert all(verifier.verify(p) for p in proofs)
    assert len(checks) == 3


def _bent(proof: BatchedProof, how: str) -> BatchedProof:
    if how == "path":
        first = bytes([proof.path[0][0] ^ 1]) + proof.path[0][1:]
        return dataclasses.replace(proof, path=(first, *proof.path[1:]))
    if how == "last_path":
        last = bytes([proof.path[-1][0] ^ 1]) + proof.path[-1][1:]
        return dataclasses.replace(proof, path=(*proof.path[:-1], last))
    if how == "short_path":
        return dataclasses.replace(proof, path=proof.path[:-1])
    if how == "long_path":
        return dataclasses.replace(proof, path=(*proof.path, proof.path[-1]))
    if how == "index":
        return dataclasses.replace(proof, leaf_index=proof.leaf_index ^ 1)
    if how == "size":
        return dataclasses.replace(proof, fields=dataclasses.replace(proof.fields, size=1))
    if how == "block_id":
        return dataclasses.replace(proof, fields=dataclasses.replace(proof.fields, block_id="x"))
    if how == "tree_size":
        seal = dataclasses.replace(proof.seal, tree_size=proof.seal.tree_size + 1)
        return dataclasses.replace(proof, seal=seal)
    if how == "root":
        seal = dataclasses.replace(proof.seal, root=bytes(32))
        return dataclasses.replace(proof, seal=seal)
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "path",
        "last_path",
        "short_path",
        "long_path",
        "index",
        "size",
        "block_id",
        "tree_size",
        "root",
    ],
)
@pytest.mark.parametrize("warm", [False, True])
def test_a_bent_proof_fails_even_after_its_batch_verified(how: str, warm: bool) -> None:
    proofs = seal_batch(SIGNER, [_fields(i) for i in range(37)])
    verifier = ProofVerifier(TRUSTED)
    if warm:  # every node of the tree is already proven and remembered
        assert all(verifier.verify(p) for p in proofs)
    for proof in (proofs[0], proofs[17], proofs[36]):
        bent = _bent(proof, how)
        assert not verifier.verify(bent), how
        assert not _independent_check(bent.to_dict(), SIGNER.public_key)
    assert all(verifier.verify(p) for p in proofs)  # and the honest ones still pass


def test_a_proof_under_another_key_is_not_trusted() -> None:
    stranger = NodeSigner.generate()
    proofs = seal_batch(stranger, [_fields(i) for i in range(4)])
    assert ProofVerifier().verify(proofs[1])  # consistent in itself
    assert not ProofVerifier(TRUSTED).verify(proofs[1])
    forged = dataclasses.replace(
        proofs[1],
        seal=dataclasses.replace(
            proofs[1].seal, verification_key=SIGNER.public_key, key_id=SIGNER.key_id
        ),
    )
    assert not ProofVerifier(TRUSTED).verify(forged)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "1"),
        ("size", True),
        ("inclusion_path", "ab"),
        ("inclusion_path", ["ab"]),
        ("root", "00"),
        ("signature", "zz" * 64),
        ("leaf_index", None),
    ],
)
def test_a_malformed_proof_is_refused_as_such(field: str, value: object) -> None:
    doc = seal_batch(SIGNER, [_fields(i) for i in range(3)])[1].to_dict()
    doc[field] = value
    with pytest.raises(ValueError):
        BatchedProof.from_dict(doc)
    del doc[field]
    with pytest.raises(ValueError):
        BatchedProof.from_dict(doc)


def test_a_seal_parsed_before_does_not_let_a_mistyped_copy_through() -> None:
    """Seals are parsed once per batch (a cache): a copy whose tree size is ``true`` or
    ``1.0`` where the first said 1 is still refused, as it would be on its own."""
    signer = NodeSigner.generate(hybrid=False)
    (proof,) = seal_batch(signer, [BlockFields("t", "only-block", "00" * 32, 1, 2, "11" * 32)])
    good = proof.to_dict()
    assert BatchedProof.from_dict(good).seal.tree_size == 1
    for odd in (True, 1.0):
        with pytest.raises(ValueError, match="tree_size"):
            BatchedProof.from_dict({**good, "tree_size": odd})


def test_the_leaves_a_batch_is_sealed_with_are_its_proof_hashes() -> None:
    # a store shows each block's proof hash from the leaves it sealed: they must be the
    # hashes a verifier computes from the proofs themselves
    proofs, leaves = batch_proof.seal_batch_with_leaves(SIGNER, [_fields(i) for i in range(7)])
    assert [leaf.hex() for leaf in leaves] == [p.proof_hash for p in proofs]
    assert batch_proof.seal_batch_with_leaves(SIGNER, []) == ([], [])
