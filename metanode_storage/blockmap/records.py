"""What one row of the block map says, and how it is serialised inside its seal.

Rows are JSON inside AES-256-GCM. JSON costs a little space but keeps the
format inspectable with the key in hand and easy to version: every record
carries ``v``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from metanode_storage.crypto.batch_proof import BatchedProof

RECORD_VERSION = 1


@dataclass(frozen=True)
class Replica:
    """One copy (or one erasure-coded fragment) of one chunk: which provider holds it,
    under which opaque key, how big, and where in that blob: ``offset`` -1 for a blob of
    its own (written before packs), else the byte offset of the sealed piece inside a pack
    blob. ``fragment`` is the fragment's index for an erasure-coded chunk, -1 for a full
    copy."""

    provider: str
    key: str
    size: int
    offset: int = -1
    fragment: int = -1

    @property
    def in_pack(self) -> bool:
        return self.offset >= 0

    @property
    def is_fragment(self) -> bool:
        return self.fragment >= 0

    def to_list(self) -> list[Any]:
        plain = [self.provider, self.key, self.size]
        if self.is_fragment:
            return [*plain, self.offset, self.fragment]
        return [*plain, self.offset] if self.in_pack else plain

    @classmethod
    def from_list(cls, row: list[Any]) -> Replica:
        return cls(*row)


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: bytes  # HMAC-SHA256(dedup key, plaintext): the keyed content address
    plain_size: int
    data_key_id: str  # which keystore key wraps ``wrapped_key``
    wrapped_key: bytes  # this chunk's own AES-256 key, sealed under that data key
    replicas: tuple[Replica, ...]
    wanted: int = 0  # pieces it was written as (replicas, or K+M fragments); fewer = short
    # The seed's backup_locations: copies that repair replaced (their provider was Offline)
    # but that may still be good. Reads fall back to them after the replicas; repair deletes
    # them once their provider answers again.
    backups: tuple[Replica, ...] = ()
    needed: int = 1  # pieces that rebuild it: 1 for full replicas, K for ec:K+M

    @property
    def is_erasure_coded(self) -> bool:
        return self.needed > 1

    @property
    def all_copies(self) -> tuple[Replica, ...]:
        """Replicas and backup copies: every blob on a provider that this chunk owns."""
        return self.replicas + self.backups

    @property
    def pieces(self) -> int:
        """Distinct pieces held: replicas, or distinct fragment indexes."""
        if self.is_erasure_coded:
            return len({r.fragment for r in self.replicas})
        return len(self.replicas)

    @property
    def is_short(self) -> bool:
        return self.pieces < self.wanted

    @property
    def margin(self) -> int:
        """Provider losses it survives as recorded (faults and outages not counted)."""
        return self.pieces - self.needed

    def to_bytes(self) -> bytes:
        doc = {
            "v": RECORD_VERSION,
            "wanted": self.wanted,
            "chunk_id": self.chunk_id.hex(),
            "plain_size": self.plain_size,
            "data_key_id": self.data_key_id,
            "wrapped_key": self.wrapped_key.hex(),
            "replicas": [r.to_list() for r in self.replicas],
            "backups": [r.to_list() for r in self.backups],
        }
        if self.is_erasure_coded:
            doc["needed"] = self.needed
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ChunkRecord:
        doc = parse_record(raw)
        return cls(
            chunk_id=bytes.fromhex(doc["chunk_id"]),
            plain_size=doc["plain_size"],
            data_key_id=doc["data_key_id"],
            wrapped_key=bytes.fromhex(doc["wrapped_key"]),
            replicas=tuple(Replica.from_list(r) for r in doc["replicas"]),
            wanted=doc.get("wanted", 0),
            backups=tuple(Replica.from_list(r) for r in doc.get("backups", [])),
            needed=doc.get("needed", 1),
        )

    @property
    def stored_size(self) -> int:
        return sum(r.size for r in self.replicas)

    @property
    def copy_size(self) -> int:
        """Provider bytes of one whole copy: a replica, or K fragments (equal in size)."""
        return self.replicas[0].size * self.needed if self.replicas else 0


@dataclass(frozen=True)
class BlockRecord:
    """A stored object: the seed's ContainerBlock minus what is derived from chunks."""

    block_id: str
    data_hash: str  # SHA-256 of the whole object, hex
    size: int
    created_at: int
    chunk_ids: tuple[bytes, ...]
    # The signed proof: a batched one (version 2) as read from a v2 row or made by a store,
    # or any proof as a document (engine/proof.py reads both versions).
    proof: BatchedProof | dict[str, Any]
    vm_signature: str  # Ed25519 over the block's canonical record, hex
    name: str = ""  # the file name given at store time; it lives only in this sealed row
    encrypted: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "v": RECORD_VERSION,
                "block_id": self.block_id,
                "data_hash": self.data_hash,
                "size": self.size,
                "created_at": self.created_at,
                "chunk_ids": [c.hex() for c in self.chunk_ids],
                "proof": self.proof_document,
                "vm_signature": self.vm_signature,
                "name": self.name,
                "encrypted": self.encrypted,
                "extra": self.extra,
            },
            separators=(",", ":"),
        ).encode()

    @property
    def proof_document(self) -> dict[str, Any]:
        """The proof as JSON carries it (a v1 row, a view, an export)."""
        return self.proof.to_dict() if isinstance(self.proof, BatchedProof) else self.proof

    @classmethod
    def from_bytes(cls, raw: bytes) -> BlockRecord:
        return cls.from_doc(parse_record(raw))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> BlockRecord:
        """From a row parsed by ``parse_record`` (which the map may complete first)."""
        return cls(
            block_id=doc["block_id"],
            data_hash=doc["data_hash"],
            size=doc["size"],
            created_at=doc["created_at"],
            chunk_ids=tuple(bytes.fromhex(c) for c in doc["chunk_ids"]),
            proof=doc["proof"],
            vm_signature=doc["vm_signature"],
            name=doc.get("name", ""),
            encrypted=doc.get("encrypted", True),
            extra=doc.get("extra", {}),
        )


def parse_record(raw: bytes) -> dict[str, Any]:
    doc = json.loads(raw)
    if not isinstance(doc, dict) or doc.get("v") != RECORD_VERSION:
        raise ValueError(
            f"unsupported record version {doc.get('v') if isinstance(doc, dict) else doc!r}"
        )
    return doc
