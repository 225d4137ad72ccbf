"""The seed's CryptographicProof and the block's VM signature, made real.

Both are Ed25519 signatures by the node's long-lived key over a canonical,
versioned encoding (never over JSON, whose byte form is not unique)::

    proof message v1 =
        b"metanode/proof/v1\\n"
        || u16 len || proof_type (UTF-8)
        || u16 len || block_id (UTF-8)
        || 32 bytes   data_hash (SHA-256 of the whole object, raw)
        || u64        size in bytes
        || u64        timestamp (Unix seconds)
        || 32 bytes   manifest_hash (SHA-256 over the ordered chunk addresses)

    block message v1 =
        b"metanode/block/v1\\n"
        || u16 len || block_id
        || 32 bytes data_hash || 32 bytes proof_hash
        || u64 size || u64 created_at || 32 bytes manifest_hash

All integers are big-endian. ``proof_hash`` is SHA-256 over the proof
message followed by its signature.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from hashlib import sha256
from typing import Any, BinaryIO

from metanode_storage.blockmap.records import BlockRecord
from metanode_storage.crypto.batch_proof import VERSION as VERSION_BATCHED
from metanode_storage.crypto.batch_proof import (
    BatchedProof,
    BlockFields,
    ProofVerifier,
    fields_record,
)
from metanode_storage.crypto.signing import NodeSigner, PublicKey, key_id_of, verify_signature

PROOF_TYPE = "integrity_authenticity"
_PROOF_DOMAIN = b"metanode/proof/v1\n"
_BLOCK_DOMAIN = b"metanode/block/v1\n"
_U64 = struct.Struct(">Q")


def _text(value: str) -> bytes:
    raw = value.encode()
    return struct.pack(">H", len(raw)) + raw


def manifest_hash(chunk_ids: Sequence[bytes]) -> bytes:
    digest = sha256()
    for chunk_id in chunk_ids:
        digest.update(chunk_id)
    return digest.digest()


@dataclass(frozen=True)
class CryptographicProof:
    proof_type: str
    block_id: str
    data_hash: str  # hex
    size: int
    timestamp: int
    manifest_hash: str  # hex
    signature: str  # hex
    verification_key: str  # hex Ed25519 public key
    key_id: str
    version: int = 1

    def message(self) -> bytes:
        return fields_record(
            _PROOF_DOMAIN,
            BlockFields(
                self.proof_type,
                self.block_id,
                self.data_hash,
                self.size,
                self.timestamp,
                self.manifest_hash,
            ),
        )

    @property
    def proof_hash(self) -> str:
        return sha256(self.message() + bytes.fromhex(self.signature)).hexdigest()

    @property
    def public(self) -> PublicKey:
        return PublicKey(bytes.fromhex(self.verification_key))

    def verify(self, trusted_keys: Mapping[str, PublicKey] | None = None) -> bool:
        """True if the signature holds; with ``trusted_keys`` the key must also be one of
        them. Version 1 is Ed25519 alone: older blocks' proofs."""
        try:
            public = bytes.fromhex(self.verification_key)
            if trusted_keys is not None and trusted_keys.get(self.key_id) != PublicKey(public):
                return False
            return self.version == 1 and verify_signature(
                public, self.message(), bytes.fromhex(self.signature)
            )
        except (ValueError, struct.error):
            return False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> CryptographicProof:
        return cls(**dict(doc))


def make_proof(
    signer: NodeSigner,
    block_id: str,
    data_hash: str,
    size: int,
    timestamp: int,
    chunk_manifest: bytes,
) -> CryptographicProof:
    unsigned = CryptographicProof(
        PROOF_TYPE,
        block_id,
        data_hash,
        size,
        timestamp,
        chunk_manifest.hex(),
        "",
        signer.public_key.hex(),
        key_id_of(signer.public_key),  # Ed25519 alone, whatever else the signer holds
    )
    signature = signer.sign(unsigned.message()).hex()
    return CryptographicProof(**{**asdict(unsigned), "signature": signature})


def block_message(
    block_id: str, data_hash: str, proof_hash: str, size: int, created_at: int, manifest: str
) -> bytes:
    return (
        _BLOCK_DOMAIN
        + _text(block_id)
        + bytes.fromhex(data_hash)
        + bytes.fromhex(proof_hash)
        + _U64.pack(size)
        + _U64.pack(created_at)
        + bytes.fromhex(manifest)
    )


PROOF_FILE_FORMAT = "metanode-proof"
BUNDLE_FORMAT = "metanode-proof-bundle"
_ENCODINGS = {
    1: "metanode/proof/v1 (docs/PROOFS.md)",
    2: "metanode/proof/v2 + metanode/proof-batch/v1 (docs/PROOFS.md)",
}
AnyProof = CryptographicProof | BatchedProof


def load_proof(doc: Mapping[str, Any]) -> AnyProof:
    """A stored or exported proof of either version; ``ValueError`` if it is malformed."""
    if doc.get("version") == VERSION_BATCHED:
        return BatchedProof.from_dict(doc)
    try:
        proof = CryptographicProof.from_dict(doc)
        bytes.fromhex(proof.verification_key + proof.data_hash + proof.manifest_hash)
        bytes.fromhex(proof.signature)
    except (TypeError, ValueError, AttributeError):
        raise ValueError("the proof is incomplete or has fields of the wrong type") from None
    return proof


def block_proof(block: BlockRecord) -> AnyProof:
    """The proof a map row holds, parsed (a v2 row's already is); ``ValueError`` if it is
    malformed."""
    return block.proof if isinstance(block.proof, BatchedProof) else load_proof(block.proof)


def proof_document(proof: AnyProof, origin: str) -> dict[str, Any]:
    """The exported proof file: self-describing JSON around the signed proof."""
    return {
        "format": PROOF_FILE_FORMAT,
        "version": proof.version,
        "origin": origin,
        "canonical_encoding": _ENCODINGS[proof.version],
        "proof": proof.to_dict(),
    }


def bundle_document(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several proof files in one: what `proof export` writes for several blocks."""
    return {"format": BUNDLE_FORMAT, "version": 1, "proofs": list(documents)}


def proof_documents(document: Any) -> list[Any]:
    """The proof files inside one parsed file: itself, or a bundle's members."""
    if isinstance(document, dict) and document.get("format") == BUNDLE_FORMAT:
        members = document.get("proofs")
        return list(members) if isinstance(members, list) else [None]
    return [document]


class ProofChecker:
    """Checks proof files offline, remembering which batch seals already verified."""

    def __init__(self, public_key: PublicKey | None) -> None:
        self.public_key = public_key
        self._batches = ProofVerifier()

    def check(self, document: Any, data: BinaryIO | None = None) -> list[str]:
        """Everything wrong with one proof file, checked with nothing but the public key
        (and the data, if given). An empty list means the proof holds."""
        if not isinstance(document, Mapping) or document.get("format") != PROOF_FILE_FORMAT:
            return ["not a metanode proof file (format field)"]
        if document.get("version") not in _ENCODINGS:
            return [f"proof file version {document.get('version')!r} is not supported"]
        try:
            proof = load_proof(document["proof"])
        except (KeyError, TypeError, ValueError, AttributeError):
            return ["the proof is incomplete or has fields of the wrong type"]
        if proof.version != document.get("version"):
            return ["the proof's version differs from the file's"]
        problems = []
        embedded = proof.public
        given = self.public_key
        if given is not None and embedded.ed25519 != given.ed25519:
            problems.append("the proof names a different verification key than the one given")
        elif given is not None and given.hybrid and embedded != given:
            problems.append(
                "the proof lacks the ML-DSA-65 half of the hybrid key given, or names another"
            )
        if embedded.key_id != proof.key_id:
            problems.append("the key id does not belong to the verification key")
        valid = self._batches.verify(proof) if isinstance(proof, BatchedProof) else proof.verify()
        if not valid:
            problems.append(
                "the signature does not verify: a field of the proof was altered after signing"
            )
        if data is not None:
            problems += _data_problems(data, proof.size, proof.data_hash)
        return problems


def _data_problems(data: BinaryIO, size: int, data_hash: str) -> list[str]:
    digest, seen = sha256(), 0
    while chunk := data.read(1 << 20):
        digest.update(chunk)
        seen += len(chunk)
    problems = []
    if seen != size:
        problems.append(f"the data is {seen} bytes, the proof says {size}")
    if digest.hexdigest() != data_hash:
        problems.append("the data's SHA-256 differs from the proof's data_hash")
    return problems
