"""Batched block proofs (version 2): one Ed25519 signature for a batch of blocks.

Blocks stored together are signed together. Each block's fields form one leaf of an
RFC 6962 Merkle tree; the node signs the tree's size and root once (the batch seal);
each block keeps its inclusion path. A proof is self-contained (fields, path, seal)
and checks offline with any SHA-256 and Ed25519 implementation::

    leaf record v2 =
        b"metanode/proof/v2\\n"
        || u16 len || proof_type (UTF-8)
        || u16 len || block_id (UTF-8)
        || 32 bytes   data_hash (SHA-256 of the whole object, raw)
        || u64        size in bytes
        || u64        timestamp (Unix seconds)
        || 32 bytes   manifest_hash (SHA-256 over the ordered chunk addresses)
    leaf hash       = SHA-256(0x00 || leaf record)
    interior node   = SHA-256(0x01 || left || right)
    seal message v1 = b"metanode/proof-batch/v1\\n" || u64 tree_size || 32 bytes root

All integers are big-endian; the tree is RFC 6962's (split at the largest power of two
below the size). Signing is one Ed25519 signature per batch, and with a TLSLS hybrid key
also one ML-DSA-65 signature (context "metanode") over the same seal message; the seal's
key id then names both public keys (crypto/signing.py), and a verifier requires both
signatures. Verifying many proofs of one batch checks the seal once and each tree node
once (``ProofVerifier``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from hashlib import sha256
from typing import Any

from metanode_storage.crypto.signing import (
    ML_DSA_PUBLIC_KEY_SIZE,
    ML_DSA_SIGNATURE_SIZE,
    NodeSigner,
    PublicKey,
)

VERSION = 2
LEAF_DOMAIN = b"metanode/proof/v2\n"
SEAL_DOMAIN = b"metanode/proof-batch/v1\n"
_U64 = struct.Struct(">Q")
_SIZE_AND_TIME = struct.Struct(">QQ")
_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class BlockFields:
    """What a proof attests about one block."""

    proof_type: str
    block_id: str
    data_hash: str  # hex
    size: int
    timestamp: int
    manifest_hash: str  # hex


def fields_record(domain: bytes, fields: BlockFields) -> bytes:
    """The block's fields after ``domain``: the body of a v1 proof message and of a v2
    leaf record alike (docs/PROOFS.md)."""
    proof_type, block_id = fields.proof_type.encode(), fields.block_id.encode()
    return b"".join(
        (
            domain,
            _U16.pack(len(proof_type)),
            proof_type,
            _U16.pack(len(block_id)),
            block_id,
            bytes.fromhex(fields.data_hash),
            _SIZE_AND_TIME.pack(fields.size, fields.timestamp),
            bytes.fromhex(fields.manifest_hash),
        )
    )


def leaf_hash_of(fields: BlockFields) -> bytes:
    return sha256(b"\x00" + fields_record(LEAF_DOMAIN, fields)).digest()


def seal_message(tree_size: int, root: bytes) -> bytes:
    return SEAL_DOMAIN + _U64.pack(tree_size) + root


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the RFC 6962 tree, leaves first: pairs are hashed, and an odd node
    at the right edge moves up unchanged (which is where RFC 6962 splits)."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [
            sha256(b"\x01" + below[i] + below[i + 1]).digest() for i in range(0, len(below) - 1, 2)
        ]
        if len(below) & 1:
            above.append(below[-1])
        levels.append(above)
    return levels


def _path(levels: list[list[bytes]], index: int) -> tuple[bytes, ...]:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return tuple(path)


@dataclass(frozen=True)
class BatchSeal:
    """The signed root of one batch."""

    tree_size: int
    root: bytes
    signature: bytes
    verification_key: bytes
    key_id: str
    ml_dsa_signature: bytes | None = None  # a hybrid key's second signature
    ml_dsa_key: bytes | None = None

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.verification_key, self.ml_dsa_key)

    @cached_property
    def signature_hex(self) -> str:
        """As a block row carries it (its VM signature): made once per seal, not per block."""
        return self.signature.hex()

    @cached_property
    def as_carried(self) -> dict[str, Any]:
        """The seal's fields as each of its proofs carries them (hex), made once: every
        block of a batch carries the same, and a hybrid seal is 5 KiB."""
        hybrid = {}
        if self.ml_dsa_signature is not None and self.ml_dsa_key is not None:
            hybrid = {
                "ml_dsa_signature": self.ml_dsa_signature.hex(),
                "ml_dsa_verification_key": self.ml_dsa_key.hex(),
            }
        return {
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "signature": self.signature_hex,
            "verification_key": self.verification_key.hex(),
            "key_id": self.key_id,
            **hybrid,
        }


@dataclass(frozen=True)
class BatchedProof:
    fields: BlockFields
    leaf_index: int
    path: tuple[bytes, ...]
    seal: BatchSeal
    version: int = VERSION

    # The fields a version 1 proof has, under the same names.
    @property
    def block_id(self) -> str:
        return self.fields.block_id

    @property
    def data_hash(self) -> str:
        return self.fields.data_hash

    @property
    def size(self) -> int:
        return self.fields.size

    @property
    def timestamp(self) -> int:
        return self.fields.timestamp

    @property
    def manifest_hash(self) -> str:
        return self.fields.manifest_hash

    @property
    def key_id(self) -> str:
        return self.seal.key_id

    @property
    def verification_key(self) -> str:
        return self.seal.verification_key.hex()

    @property
    def public(self) -> PublicKey:
        return self.seal.public

    @property
    def proof_hash(self) -> str:
        """The block's leaf hash: what the seal commits to for this block."""
        return leaf_hash_of(self.fields).hex()

    def verify(self, trusted_keys: Mapping[str, PublicKey] | None = None) -> bool:
        return ProofVerifier(trusted_keys).verify(self)

    def to_dict(self) -> dict[str, Any]:
        f = self.fields
        return {
            "version": self.version,
            "proof_type": f.proof_type,
            "block_id": f.block_id,
            "data_hash": f.data_hash,
            "size": f.size,
            "timestamp": f.timestamp,
            "manifest_hash": f.manifest_hash,
            "leaf_index": self.leaf_index,
            "inclusion_path": [h.hex() for h in self.path],
            **self.seal.as_carried,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> BatchedProof:
        """Parse a version 2 proof; ``ValueError`` for missing or mistyped fields."""
        try:
            fields = BlockFields(
                _typed(doc, "proof_type", str),
                _typed(doc, "block_id", str),
                _hex(doc, "data_hash", 32).hex(),
                _typed(doc, "size", int),
                _typed(doc, "timestamp", int),
                _hex(doc, "manifest_hash", 32).hex(),
            )
            path = doc["inclusion_path"]
            if not isinstance(path, list) or not all(isinstance(h, str) for h in path):
                raise ValueError("inclusion_path is not a list of hex strings")
            hashes = tuple(bytes.fromhex(h) for h in path)
            if any(len(h) != 32 for h in hashes):
                raise ValueError("an inclusion_path hash is not 32 bytes")
            return cls(
                fields,
                _typed(doc, "leaf_index", int),
                hashes,
                _seal_of(doc),
                _typed(doc, "version", int),
            )
        except KeyError as exc:
            raise ValueError(f"the proof has no {exc.args[0]}") from None


_SEAL_FIELDS = (
    "tree_size",
    "root",
    "signature",
    "verification_key",
    "key_id",
    "ml_dsa_signature",
    "ml_dsa_verification_key",
)
# Seals parsed lately, by their fields as a proof carries them: a batch's blocks share
# one seal, and a hybrid seal is 5 KiB of hex to decode.
_parsed_seals: dict[tuple[Any, ...], BatchSeal] = {}


def _seal_of(doc: Mapping[str, Any]) -> BatchSeal:
    # with each value's type: true == 1 and 1.0 == 1, but only an int is a tree size
    as_carried = tuple((type(value), value) for value in map(doc.get, _SEAL_FIELDS))
    try:
        seal = _parsed_seals.get(as_carried)
    except TypeError:  # a field of an unhashable type: parsed below, and refused
        seal = None
    if seal is not None:
        return seal
    seal = BatchSeal(
        _typed(doc, "tree_size", int),
        _hex(doc, "root", 32),
        _hex(doc, "signature", 64),
        _hex(doc, "verification_key", 32),
        _typed(doc, "key_id", str),
        _optional_hex(doc, "ml_dsa_signature", ML_DSA_SIGNATURE_SIZE),
        _optional_hex(doc, "ml_dsa_verification_key", ML_DSA_PUBLIC_KEY_SIZE),
    )
    if len(_parsed_seals) >= 64:
        _parsed_seals.clear()
    _parsed_seals[as_carried] = seal
    return seal


def _typed(doc: Mapping[str, Any], name: str, kind: type) -> Any:
    value = doc[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} is not a {kind.__name__}")
    return value


def _hex(doc: Mapping[str, Any], name: str, size: int) -> bytes:
    value = _typed(doc, name, str)
    raw = bytes.fromhex(value)
    if len(raw) != size:
        raise ValueError(f"{name} is not {size} bytes")
    return raw


def _optional_hex(doc: Mapping[str, Any], name: str, size: int) -> bytes | None:
    return _hex(doc, name, size) if name in doc else None


def seal_batch(signer: NodeSigner, blocks: Sequence[BlockFields]) -> list[BatchedProof]:
    """Sign ``blocks`` together: one signature (two with a hybrid key), one inclusion
    path per block."""
    return seal_batch_with_leaves(signer, blocks)[0]


def seal_batch_with_leaves(
    signer: NodeSigner, blocks: Sequence[BlockFields]
) -> tuple[list[BatchedProof], list[bytes]]:
    """``seal_batch``, and each block's leaf hash (its proof hash, raw) as the tree was
    built from it: a store shows it, and hashing each leaf again cost 2.4 us a block."""
    if not blocks:
        return [], []
    leaves = [leaf_hash_of(b) for b in blocks]
    levels = _levels(leaves)
    root = levels[-1][0]
    message = seal_message(len(blocks), root)
    seal = BatchSeal(
        len(blocks),
        root,
        signer.sign(message),
        signer.public_key,
        signer.key_id,
        signer.sign_ml_dsa(message),
        signer.public.ml_dsa,
    )
    return [BatchedProof(b, i, _path(levels, i), seal) for i, b in enumerate(blocks)], leaves


# Per seal: tree position (level, index) -> the node's hash and the path above it.
_ProvenNodes = dict[tuple[int, int], tuple[bytes, tuple[bytes, ...]]]


class ProofVerifier:
    """Checks batched proofs, each distinct seal signature once and each tree node once.

    Tree nodes are remembered only once a path through them reached a seal's root, so a
    later proof that meets one of them is proven from there up: the root commits to it.
    """

    MAX_SEALS = 64  # seals remembered at once, so memory stays bounded over a long run

    def __init__(self, trusted_keys: Mapping[str, PublicKey] | None = None) -> None:
        self._trusted = trusted_keys
        self._seals: dict[BatchSeal, _ProvenNodes] = {}

    def verify(self, proof: BatchedProof) -> bool:
        seal = proof.seal
        if proof.version != VERSION or not 0 <= proof.leaf_index < seal.tree_size:
            return False
        known = self._seals.get(seal)
        if known is None:
            if not self._seal_holds(seal):
                return False
            if len(self._seals) >= self.MAX_SEALS:
                del self._seals[next(iter(self._seals))]  # the oldest
            known = self._seals[seal] = {}
        try:
            node = leaf_hash_of(proof.fields)
        except ValueError:
            return False
        return self._climb(node, proof.leaf_index, seal.tree_size, proof.path, seal.root, known)

    def _seal_holds(self, seal: BatchSeal) -> bool:
        """The seal's key is the one its id names (both halves of a hybrid key), trusted
        if trust was asked for, and every signature the key calls for holds."""
        public = seal.public
        if public.key_id != seal.key_id:
            return False
        if self._trusted is not None and self._trusted.get(seal.key_id) != public:
            return False
        return public.verify(
            seal_message(seal.tree_size, seal.root), seal.signature, seal.ml_dsa_signature
        )

    @staticmethod
    def _climb(
        node: bytes,
        index: int,
        width: int,
        path: tuple[bytes, ...],
        root: bytes,
        known: _ProvenNodes,
    ) -> bool:
        """Hash from the leaf up until a node already proven; from there the rest of the
        path must be exactly the proven path above it. So a proof is accepted in one form
        only, whatever was verified before it, and most proofs of a batch cost a leaf
        hash and one or two interior hashes."""
        seen: list[tuple[tuple[int, int], tuple[bytes, tuple[bytes, ...]]]] = []
        level = used = 0
        while width > 1:
            proven = known.get((level, index))
            if proven is not None and proven[0] == node:
                if proven[1] != path[used:]:
                    return False
                break
            seen.append(((level, index), (node, path[used:])))
            if index & 1 or index + 1 < width:
                if used == len(path):
                    return False
                sibling = path[used]
                used += 1
                seen.append(((level, index ^ 1), (sibling, (node, *path[used:]))))
                pair = sibling + node if index & 1 else node + sibling
                node = sha256(b"\x01" + pair).digest()
            index >>= 1
            width = (width + 1) >> 1
            level += 1
        else:
            if used != len(path) or node != root:
                return False
        known.update(seen)
        return True
