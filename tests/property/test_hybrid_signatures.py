"""TLSLS hybrid signatures: a proof, checkpoint or key hand-over of a hybrid key needs
both its Ed25519 and its ML-DSA-65 signature; stripping or altering either fails."""

from __future__ import annotations

import base64
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metanode_storage.audit.event_check import KEY_HANDOVER
from metanode_storage.audit.note import Checkpoint, NoteInvalid, open_note
from metanode_storage.audit.trail import AuditTrail
from metanode_storage.crypto.batch_proof import BatchedProof, BlockFields, seal_batch
from metanode_storage.crypto.signing import NodeSigner, PublicKey
from metanode_storage.engine.proof import ProofChecker, load_proof, proof_document

HYBRID = NodeSigner.generate()
CLASSIC = NodeSigner.generate(hybrid=False)


def _fields(i: int) -> BlockFields:
    return BlockFields(
        "integrity_authenticity",
        f"block-{i}",
        sha256(b"data %d" % i).hexdigest(),
        i,
        1_790_000_000,
        sha256(b"manifest %d" % i).hexdigest(),
    )


def _proof_doc(signer: NodeSigner = HYBRID) -> dict[str, Any]:
    return seal_batch(signer, [_fields(i) for i in range(3)])[1].to_dict()


def _holds(doc: dict[str, Any], given_key: PublicKey | None = HYBRID.public) -> bool:
    """Trusted by the node, and offline with the key given: both must agree."""
    try:
        proof = load_proof(doc)
    except ValueError:
        return False
    trusted = proof.verify({HYBRID.key_id: HYBRID.public, CLASSIC.key_id: CLASSIC.public})
    offline = not ProofChecker(given_key).check(proof_document(proof, "test"))
    assert trusted == offline
    return trusted


def test_a_hybrid_proof_carries_and_needs_both_signatures() -> None:
    doc = _proof_doc()
    assert len(bytes.fromhex(doc["ml_dsa_signature"])) == 3309
    assert _holds(doc)
    assert HYBRID.key_id != CLASSIC.key_id and HYBRID.public.hybrid


@pytest.mark.parametrize(
    "stripped",
    [
        ("ml_dsa_signature",),
        ("ml_dsa_verification_key",),
        ("ml_dsa_signature", "ml_dsa_verification_key"),
    ],
)
def test_stripping_the_ml_dsa_half_fails(stripped: tuple[str, ...]) -> None:
    doc = {k: v for k, v in _proof_doc().items() if k not in stripped}
    assert not _holds(doc)


def test_stripping_it_and_renaming_the_key_is_not_trusted() -> None:
    """A forger who breaks Ed25519 drops the ML-DSA half and gives the proof the key id of
    the Ed25519 key alone: self-consistent, but no trusted key has that id."""
    doc = {k: v for k, v in _proof_doc().items() if not k.startswith("ml_dsa")}
    doc["key_id"] = PublicKey(HYBRID.public_key).key_id
    proof = load_proof(doc)
    assert proof.verify()  # consistent on its own
    assert not proof.verify({HYBRID.key_id: HYBRID.public})
    assert ProofChecker(HYBRID.public).check(proof_document(proof, "test"))


@settings(max_examples=30, deadline=None)
@given(field=st.sampled_from(["signature", "ml_dsa_signature"]), at=st.integers(0, 3308))
def test_altering_either_signature_fails(field: str, at: int) -> None:
    doc = _proof_doc()
    raw = bytearray.fromhex(doc[field])
    raw[at % len(raw)] ^= 0x01
    doc[field] = raw.hex()
    assert not _holds(doc)


def test_another_keys_ml_dsa_half_fails() -> None:
    doc = _proof_doc()
    doc["ml_dsa_verification_key"] = _proof_doc(NodeSigner.generate())["ml_dsa_verification_key"]
    assert not _holds(doc)


def test_ed25519_only_proofs_of_older_nodes_keep_verifying() -> None:
    doc = _proof_doc(CLASSIC)
    assert "ml_dsa_signature" not in doc
    assert _holds(doc, CLASSIC.public)
    assert isinstance(load_proof(doc), BatchedProof)


def _note_lines(note: str) -> tuple[str, list[str]]:
    text, signatures = note.split("\n\n", 1)
    return text, signatures.splitlines()


def test_a_hybrid_checkpoint_needs_both_signature_lines() -> None:
    note = Checkpoint("metanode/n", 7, b"r" * 32).sign(HYBRID)
    text, lines = _note_lines(note)
    assert len(lines) == 2
    assert open_note(note, [HYBRID.public]).size == 7
    for kept in ([lines[0]], [lines[1]]):
        with pytest.raises(NoteInvalid):
            open_note(f"{text}\n\n" + "\n".join(kept) + "\n", [HYBRID.public])
    prefix, _, blob = lines[1].rpartition(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[100] ^= 1
    altered = f"{prefix} {base64.b64encode(bytes(raw)).decode()}"
    with pytest.raises(NoteInvalid):
        open_note(f"{text}\n\n{lines[0]}\n{altered}\n", [HYBRID.public])
    # an Ed25519-only key's checkpoint has one line and needs only it
    classic = Checkpoint("metanode/n", 7, b"r" * 32).sign(CLASSIC)
    assert len(_note_lines(classic)[1]) == 1
    assert open_note(classic, [CLASSIC.public]).size == 7


def test_a_hand_over_without_its_ml_dsa_signature_fails_audit(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path / "audit.sqlite", "metanode/n", HYBRID, create=True)
    try:
        trail.append("store", "b1")
        new = NodeSigner.generate()
        # signed with Ed25519 (what a forger who broke it could do), no ML-DSA signature
        trail.append(
            KEY_HANDOVER,
            detail={
                "old_key_id": HYBRID.key_id,
                "new_key_id": new.key_id,
                "new_public_key": new.public.text(),
            },
        )
        result = trail.verify({HYBRID.key_id: HYBRID.public, new.key_id: new.public})
    finally:
        trail.close()
    assert not result.ok
    assert "ML-DSA-65" in result.problems[0]
