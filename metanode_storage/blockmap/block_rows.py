"""A block row's plaintext inside its seal: version 2 (binary) for a block whose batched
proof attests exactly the row's own fields, version 1 (JSON, records.py) for any other.

A version 1 row of a batch's block carried its whole proof: the block id, data hash, size
and time the row holds anyway, the batch seal (the same 330 bytes of hex in every block
of the batch) and the inclusion path in hex: 2 KiB to encode, seal and parse per block,
most of a batch's per-block cost. A version 2 row keeps each of those once, and the seal
once per batch, in the seals table beside the ML-DSA parts (blockmap/seal_parts.py)::

    v2 row =
        u8   2                  the version (a version 1 row starts with "{")
        u8   flags              bit 0: the object's chunks are encrypted
        u64  size               bytes of the object; also the proof's size
        u64  created_at         Unix seconds; also the proof's timestamp
        32   data_hash          SHA-256 of the object; also the proof's
        32   manifest_hash      the proof's hash over the ordered chunk addresses
        64   seal signature     the batch seal's Ed25519 signature: names the seal part
        u32  leaf_index         the block's leaf in the batch's Merkle tree
        u8   n, n x 32 bytes    the inclusion path
        u32  n, n x 32 bytes    the chunk ids, in order
        u16  n, n bytes         the proof type, UTF-8
        u16  n, n bytes         the name given at store time, UTF-8 (lone surrogates
                                kept, as Python's "surrogatepass" writes them)
        ...                     extra, JSON; empty for {}

    batch seal part =
        u8   1                  the version
        u64  tree_size, 32 root, 64 signature, 32 Ed25519 verification key
        u8   n, n bytes         the key id, UTF-8
        ...                     the ML-DSA-65 signature of a hybrid key, else nothing

A hybrid seal's ML-DSA-65 public key is the key part that version 1 rows use too. The
block id is the row's key, bound to the row through the seal's associated data, and the
proof's id. Integers are big-endian. Nothing the proof signs is dropped: reading a row
gives back the proof that was signed, which is then checked as before.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from metanode_storage.blockmap.records import BlockRecord
from metanode_storage.blockmap.seal_parts import Part, key_label
from metanode_storage.crypto.batch_proof import VERSION, BatchedProof, BatchSeal, BlockFields

ROW_VERSION = 2
SEAL_PART_VERSION = 1
_ENCRYPTED = 1
_HEAD = struct.Struct(">BBQQ32s32s64sIB")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_SEAL_HEAD = struct.Struct(">BQ32s64s32sB")
_HASH = 32
_NAMES = "surrogatepass"  # the UTF-8 error handler for names, both ways

SealOf = Callable[[bytes], BatchSeal]  # a batch seal by its signature, from the seals table


def seal_label(signature: bytes) -> bytes:
    """What names a batch seal's part: its signature, which no other seal has."""
    return b"seal\0" + signature


def encode(block: BlockRecord) -> tuple[bytes, tuple[Part, ...]] | None:
    """(the v2 row, the seal parts it refers to), or None when the block needs v1: its
    proof is not a batched one that attests the row's own fields, or a field does not
    fit the layout."""
    proof = block.proof
    if not isinstance(proof, BatchedProof) or proof.version != VERSION:
        return None
    fields, seal = proof.fields, proof.seal
    if (
        fields.block_id != block.block_id
        or fields.data_hash != block.data_hash
        or fields.size != block.size
        or fields.timestamp != block.created_at
        or seal.signature_hex != block.vm_signature
        or any(len(c) != _HASH for c in block.chunk_ids)
        or len(proof.path) > 255
        or not 0 <= proof.leaf_index <= 0xFFFFFFFF
        or len(block.chunk_ids) > 0xFFFFFFFF
    ):
        return None
    try:
        proof_type = fields.proof_type.encode()
    except UnicodeEncodeError:
        return None
    # A file name is kept as given, the undecodable bytes of a POSIX name (str's lone
    # surrogates, by surrogateescape) included, as the JSON row keeps them.
    name = block.name.encode("utf-8", _NAMES)
    if len(proof_type) > 0xFFFF or len(name) > 0xFFFF:
        return None
    row = b"".join(
        (
            _HEAD.pack(
                ROW_VERSION,
                _ENCRYPTED if block.encrypted else 0,
                block.size,
                block.created_at,
                bytes.fromhex(fields.data_hash),
                bytes.fromhex(fields.manifest_hash),
                seal.signature,
                proof.leaf_index,
                len(proof.path),
            ),
            *proof.path,
            _U32.pack(len(block.chunk_ids)),
            *block.chunk_ids,
            _U16.pack(len(proof_type)),
            proof_type,
            _U16.pack(len(name)),
            name,
            _extra_text(block.extra),
        )
    )
    return row, seal_parts_of(seal)


@lru_cache(maxsize=16)  # a batch's blocks share one seal
def seal_parts_of(seal: BatchSeal) -> tuple[Part, ...]:
    """The parts a v2 row of this seal counts on: the seal, and a hybrid key's ML-DSA half."""
    key_id = seal.key_id.encode()
    body = b"".join(
        (
            _SEAL_HEAD.pack(
                SEAL_PART_VERSION,
                seal.tree_size,
                seal.root,
                seal.signature,
                seal.verification_key,
                len(key_id),
            ),
            key_id,
            seal.ml_dsa_signature or b"",
        )
    )
    seal_part = Part("", seal_label(seal.signature), body.hex())
    if seal.ml_dsa_key is None:
        return (seal_part,)
    return seal_part, Part("", key_label(seal.key_id), seal.ml_dsa_key.hex())


def decode_seal(body: bytes, ml_dsa_key: Callable[[str], bytes]) -> BatchSeal:
    """A batch seal part back; ``ml_dsa_key`` gives a hybrid key's ML-DSA half by key id."""
    version, tree_size, root, signature, key, id_size = _SEAL_HEAD.unpack_from(body)
    if version != SEAL_PART_VERSION:
        raise ValueError(f"unknown seal part version {version}")
    at = _SEAL_HEAD.size + id_size
    key_id = body[_SEAL_HEAD.size : at].decode()
    ml_dsa_signature = body[at:] or None
    return BatchSeal(
        tree_size,
        root,
        signature,
        key,
        key_id,
        ml_dsa_signature,
        None if ml_dsa_signature is None else ml_dsa_key(key_id),
    )


def is_v2(plain: bytes) -> bool:
    return plain[:1] == b"\x02"


def decode(block_id: str, plain: bytes, seal_of: SealOf) -> BlockRecord:
    """A v2 row back into the record it was made from; ``ValueError`` if it is cut short
    or malformed (the seal authenticated it, so that is a bug or a foreign writer)."""
    try:
        (_, flags, size, created_at, data_hash, manifest, signature, leaf, path_len) = (
            _HEAD.unpack_from(plain)
        )
        at = _HEAD.size + path_len * _HASH
        path = tuple([plain[i : i + _HASH] for i in range(_HEAD.size, at, _HASH)])
        (count,) = _U32.unpack_from(plain, at)
        at += _U32.size
        end = at + count * _HASH
        chunk_ids = tuple([plain[i : i + _HASH] for i in range(at, end, _HASH)])
        proof_type, at = _text(plain, end)
        name, at = _text(plain, at, _NAMES)
        extra: dict[str, Any] = _parse_extra(plain[at:]) if at < len(plain) else {}
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"a malformed v2 block row: {exc}") from None
    if len(path) != path_len or len(chunk_ids) != count:
        raise ValueError("a v2 block row is cut short")
    hex_hash = data_hash.hex()
    seal = seal_of(signature)
    fields = BlockFields(proof_type, block_id, hex_hash, size, created_at, manifest.hex())
    return BlockRecord(
        block_id=block_id,
        data_hash=hex_hash,
        size=size,
        created_at=created_at,
        chunk_ids=chunk_ids,
        proof=BatchedProof(fields, leaf, path, seal),
        vm_signature=seal.signature_hex,
        name=name,
        encrypted=bool(flags & _ENCRYPTED),
        extra=extra,
    )


# The one extra most batch blocks have, their place in a bundle, as json.dumps writes it:
# read and written without json, which took a fifth of reading a row.
_BUNDLE_OFFSET = re.compile(rb'\{"offset":(0|[1-9][0-9]{0,17})\}')


def _extra_text(extra: dict[str, Any]) -> bytes:
    if not extra:
        return b""
    if len(extra) == 1 and type(extra.get("offset")) is int and 0 <= extra["offset"] < 10**18:
        return b'{"offset":%d}' % extra["offset"]
    return json.dumps(extra, separators=(",", ":")).encode()


def _parse_extra(raw: bytes) -> dict[str, Any]:
    offset = _BUNDLE_OFFSET.fullmatch(raw)
    if offset is not None:
        return {"offset": int(offset[1])}
    extra = json.loads(raw)
    if not isinstance(extra, dict):
        raise ValueError("a v2 block row's extra is not an object")
    return extra


def _text(plain: bytes, at: int, errors: str = "strict") -> tuple[str, int]:
    (size,) = _U16.unpack_from(plain, at)
    at += _U16.size
    if at + size > len(plain):
        raise ValueError("a v2 block row is cut short")
    return plain[at : at + size].decode("utf-8", errors), at + size
