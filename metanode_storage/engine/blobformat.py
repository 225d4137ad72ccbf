"""The bytes a provider holds for one replica (or one erasure-coded fragment) of one chunk.

Sealed form (the default)::

    offset  size  field
    0       1     format: 1 = AES-256-GCM sealed
    1       12    nonce, fresh per replica, so replicas of a chunk share no bytes
    13      ...   ciphertext || 16-byte tag of the frame below;
                  associated data = the format byte || the chunk's keyed address

Integrity-only form (``encryption = false``)::

    0       1     format: 2 = clear frame, HMAC-SHA256 authenticated
    1       ...   the frame below
    end-32  32    HMAC-SHA256(chunk key, format byte || chunk address || frame)

The frame: 1 byte flags (bit 0: zstd-compressed), 4 bytes payload length,
the payload, then zero padding up to the Padmé length, so a provider learns
only a rounded size (at most 12% overhead).

An erasure-coded chunk's fragments (engine/erasure.py: equal slices of the padded
frame, plus parity) are sealed the same way, each on its own with a fresh nonce; the
associated data then ends in the fragment's index (``piece_address``), so a fragment
cannot be passed off as another of the same chunk.
"""

from __future__ import annotations

import hmac
import os
import struct
import threading
from hashlib import sha256

import zstandard

from metanode_storage.crypto import aead

SEALED = 1
CLEAR_AUTHENTICATED = 2
_SEALED_HEAD = bytes([SEALED])
_FLAG_ZSTD = 0x01
_FRAME_HEAD = struct.Struct(">BI")
_ZSTD_LEVEL = 3

# zstd (de)compressor objects are not thread-safe: one per thread.
_local = threading.local()


class BlobInvalid(Exception):
    """The blob is not an authentic replica of the chunk it is supposed to hold."""


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_local, "c"):
        _local.c = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)
    c: zstandard.ZstdCompressor = _local.c
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "d"):
        _local.d = zstandard.ZstdDecompressor()
    d: zstandard.ZstdDecompressor = _local.d
    return d


def padme(length: int) -> int:
    """Padmé (Nikitin et al., PETS 2019): round up, leaking O(log log L) bits of the length."""
    if length < 2:
        return length
    e = length.bit_length() - 1
    s = e.bit_length()
    mask = (1 << (e - s)) - 1
    return (length + mask) & ~mask


def make_frame(plaintext: bytes, compress: bool) -> bytes:
    """Compress (when it helps), add the frame header, pad. Done once per chunk."""
    flags, payload = 0, plaintext
    if compress and plaintext:
        packed = _compressor().compress(plaintext)
        if len(packed) < len(plaintext):
            flags, payload = _FLAG_ZSTD, packed
    body_len = _FRAME_HEAD.size + len(payload)
    padding = bytes(padme(body_len) - body_len)
    return b"".join((_FRAME_HEAD.pack(flags, len(payload)), payload, padding))  # one copy


def read_frame(frame: bytes, plain_size: int) -> bytes:
    if len(frame) < _FRAME_HEAD.size:
        raise BlobInvalid("frame too short")
    flags, length = _FRAME_HEAD.unpack_from(frame)
    payload = frame[_FRAME_HEAD.size : _FRAME_HEAD.size + length]
    if len(payload) != length or flags & ~_FLAG_ZSTD:
        raise BlobInvalid("frame header is inconsistent")
    if not flags & _FLAG_ZSTD:
        return payload
    try:
        return _decompressor().decompress(payload, max_output_size=plain_size)
    except zstandard.ZstdError as exc:
        raise BlobInvalid(f"decompression failed: {exc}") from None


def piece_address(chunk_id: bytes, fragment: int) -> bytes:
    """What a piece's seal is bound to: the chunk's address, and a fragment's index."""
    return chunk_id if fragment < 0 else chunk_id + b"#" + bytes([fragment])


def seal_replica(frame: bytes, chunk_key: bytes, chunk_id: bytes, encrypt: bool) -> bytes:
    if encrypt:
        return aead.seal(chunk_key, frame, _SEALED_HEAD + chunk_id, prefix=_SEALED_HEAD)
    head = bytes([CLEAR_AUTHENTICATED])
    tag = hmac.new(chunk_key, head + chunk_id + frame, sha256).digest()
    return head + frame + tag


def open_replica(blob: bytes, chunk_key: bytes, chunk_id: bytes) -> bytes:
    """The frame inside ``blob``, or ``BlobInvalid`` if it is not authentic."""
    if not blob:
        raise BlobInvalid("blob is empty")
    if blob[0] == SEALED:
        try:
            return aead.open_sealed(chunk_key, memoryview(blob)[1:], blob[:1] + chunk_id)
        except aead.OpenFailed:
            raise BlobInvalid("authentication failed (AES-GCM tag)") from None
    if blob[0] == CLEAR_AUTHENTICATED and len(blob) >= 33:
        frame, tag = blob[1:-32], blob[-32:]
        expected = hmac.new(chunk_key, blob[:1] + chunk_id + frame, sha256).digest()
        if hmac.compare_digest(tag, expected):
            return frame
        raise BlobInvalid("authentication failed (HMAC)")
    raise BlobInvalid(f"unknown blob format {blob[0]}")


_OWNER_TAG = 8  # bytes of the ownership tag at the end of a blob name
OWN_BLOB_KEY_LENGTH = 2 * (16 + _OWNER_TAG)


def _owner_tag(owner_key: bytes, nonce: bytes) -> bytes:
    return aead.keyed_hash(owner_key, b"blob-owner", nonce)[:_OWNER_TAG]


def new_blob_key(owner_key: bytes) -> str:
    """A provider-side name: 128 random bits, then a 64-bit tag keyed by this node.

    The tag lets this node tell its own blobs from another node's in a shared
    bucket or directory (so `gc` never deletes theirs); without the key it is
    indistinguishable from random, so a provider still cannot link blobs.
    """
    nonce = os.urandom(16)
    return (nonce + _owner_tag(owner_key, nonce)).hex()


def is_own_blob_key(owner_key: bytes, key: str) -> bool:
    """True only for names this node made (``new_blob_key``): checked, not assumed."""
    if len(key) != OWN_BLOB_KEY_LENGTH:
        return False
    try:
        raw = bytes.fromhex(key)
    except ValueError:
        return False
    return hmac.compare_digest(raw[16:], _owner_tag(owner_key, raw[:16]))
