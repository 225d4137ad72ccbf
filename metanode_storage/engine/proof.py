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

from metanode_storage.crypto.signing import NodeSigner, key_id_of, verify_signature

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
        return (
            _PROOF_DOMAIN
            + _text(self.proof_type)
            + _text(self.block_id)
            + bytes.fromhex(self.data_hash)
            + _U64.pack(self.size)
            + _U64.pack(self.timestamp)
            + bytes.fromhex(self.manifest_hash)
        )

    @property
    def proof_hash(self) -> str:
        return sha256(self.message() + bytes.fromhex(self.signature)).hexdigest()

    def verify(self, trusted_keys: Mapping[str, bytes] | None = None) -> bool:
        """True if the signature holds; with ``trusted_keys`` the key must also be one of them."""
        try:
            public = bytes.fromhex(self.verification_key)
            if trusted_keys is not None and trusted_keys.get(self.key_id) != public:
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
        signer.key_id,
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
PROOF_FILE_VERSION = 1


def proof_document(proof: CryptographicProof, origin: str) -> dict[str, Any]:
    """The exported proof file: self-describing JSON around the signed proof."""
    return {
        "format": PROOF_FILE_FORMAT,
        "version": PROOF_FILE_VERSION,
        "origin": origin,
        "canonical_encoding": "metanode/proof/v1 (docs/PROOFS.md)",
        "proof": proof.to_dict(),
    }


def check_proof_document(
    document: Mapping[str, Any],
    public_key: bytes | None,
    data: BinaryIO | None = None,
) -> list[str]:
    """Everything wrong with a proof file, checked offline with nothing but the public key
    (and the data, if given). An empty list means the proof holds."""
    if document.get("format") != PROOF_FILE_FORMAT:
        return ["not a metanode proof file (format field)"]
    if document.get("version") != PROOF_FILE_VERSION:
        return [f"proof file version {document.get('version')!r} is not supported"]
    try:
        proof = CryptographicProof.from_dict(document["proof"])
        embedded = bytes.fromhex(proof.verification_key)
        bytes.fromhex(proof.data_hash + proof.manifest_hash + proof.signature)
    except (KeyError, TypeError, ValueError):
        return ["the proof is incomplete or has fields of the wrong type"]
    problems = []
    if public_key is not None and embedded != public_key:
        problems.append("the proof names a different verification key than the one given")
    if key_id_of(embedded) != proof.key_id:
        problems.append("the key id does not belong to the verification key")
    if not proof.verify():
        problems.append(
            "the signature does not verify: a field of the proof was altered after signing"
        )
    if data is not None:
        digest, size = sha256(), 0
        while chunk := data.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
        if size != proof.size:
            problems.append(f"the data is {size} bytes, the proof says {proof.size}")
        if digest.hexdigest() != proof.data_hash:
            problems.append("the data's SHA-256 differs from the proof's data_hash")
    return problems
