from __future__ import annotations

import dataclasses
import os
from hashlib import sha256
from typing import Any

import pytest

from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.proof import CryptographicProof, make_proof, manifest_hash


def _proof(signer: NodeSigner) -> CryptographicProof:
    return make_proof(
        signer,
        "block-1",
        sha256(b"data").hexdigest(),
        4,
        1_700_000_000,
        manifest_hash([os.urandom(32)]),
    )


def test_a_fresh_proof_verifies_under_the_node_key() -> None:
    signer = NodeSigner.generate(hybrid=False)
    proof = _proof(signer)
    assert proof.verify({signer.key_id: signer.public})
    assert CryptographicProof.from_dict(proof.to_dict()) == proof


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("proof_type", "other"),
        ("block_id", "block-2"),
        ("data_hash", sha256(b"other").hexdigest()),
        ("size", 5),
        ("timestamp", 1_700_000_001),
        ("manifest_hash", sha256(b"m").hexdigest()),
        ("signature", "00" * 64),
        ("version", 2),
    ],
)
def test_any_changed_field_fails(field: str, value: Any) -> None:
    signer = NodeSigner.generate(hybrid=False)
    tampered = dataclasses.replace(_proof(signer), **{field: value})
    assert not tampered.verify({signer.key_id: signer.public})


def test_a_proof_signed_by_another_key_is_not_trusted() -> None:
    node, stranger = NodeSigner.generate(hybrid=False), NodeSigner.generate(hybrid=False)
    proof = _proof(stranger)
    assert proof.verify()  # self-consistent
    assert not proof.verify({node.key_id: node.public})  # but not by this node


def test_the_same_key_signs_every_proof() -> None:
    signer = NodeSigner.generate(hybrid=False)
    assert _proof(signer).verification_key == _proof(signer).verification_key
