"""Sealed request and response bodies between a remote client and the service (TLSLS).

TLS here negotiates X25519, which a quantum computer could later break on a
recording of today's traffic. So, inside TLS, each request is sealed again:

    request  = u32 n | HPKE-X-Wing(service transport key, a fresh 32-byte request key) (n bytes)
               | frames under HKDF(request key, "up")
    response = frames under HKDF(request key, "down")

Only the holder of the service's X-Wing key learns the request key, so only it
can read the request and only it can write a response the client accepts.

A frame is ``u32 header | AES-256-GCM(ciphertext)``: the header's top bit marks
the last frame and the rest is the ciphertext length; the nonce is the frame's
number, and the header is the associated data, so frames cannot be reordered,
dropped, replayed into another request or cut off unnoticed (a stream that ends
before its last frame is an error). The first frame of each direction is a JSON
head (the request: token, operation, arguments; the response: result or
error); data follows in frames of at most 64 KiB.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from metanode_storage.crypto.xwing import XWingIdentity, XWingRecipient
from metanode_storage.errors import IntegrityError

FRAME = 64 * 1024  # plaintext bytes per data frame
_HEADER = struct.Struct(">I")
_LAST = 1 << 31
_MAX_ENVELOPE = 4096
_MAX_HEAD = 64 << 20  # a head (a listing of many blocks) may span frames, up to this
_MAX_CIPHERTEXT = FRAME + 16
_INFO = b"metanode sealed request v1"
TRANSPORT_LABEL = b"metanode service transport x-wing v1"


class SealedStreamBroken(IntegrityError):
    """A sealed body that does not open: altered, reordered, cut short, or not for us."""

    reference = "MN-503"


def transport_statement(node_id: str, recipient: str, signing_keys: list[str]) -> bytes:
    """What the node's signing key signs to vouch for its service's transport key (and its
    other signing keys, retired ones included, which older proofs name)."""
    return "\n".join(["metanode transport key v1", node_id, recipient, *signing_keys]).encode()


def _key(request_key: bytes, direction: bytes) -> AESGCM:
    return AESGCM(
        HKDF(hashes.SHA256(), 32, None, b"metanode sealed " + direction).derive(request_key)
    )


def new_request(recipient: XWingRecipient) -> tuple[bytes, bytes]:
    """(a fresh request key, the envelope that carries it to the service)."""
    request_key = os.urandom(32)
    sealed = recipient.seal(request_key, _INFO)
    return request_key, _HEADER.pack(len(sealed)) + sealed


def open_envelope(identity: XWingIdentity, sealed: bytes) -> bytes:
    """The request key in an envelope's body (after its length)."""
    key = identity.open(sealed, _INFO)
    if len(key) != 32:
        raise SealedStreamBroken("the sealed request's key has the wrong size")
    return key


def envelope_length(prefix: bytes) -> int:
    length = int(_HEADER.unpack(prefix)[0])
    if not 0 < length <= _MAX_ENVELOPE:
        raise SealedStreamBroken("not a sealed request")
    return length


class FrameSealer:
    """Seals one direction's frames, in order."""

    def __init__(self, request_key: bytes, direction: bytes) -> None:
        self._aead = _key(request_key, direction)
        self._number = 0
        self.finished = False

    def frame(self, plain: bytes, last: bool = False) -> bytes:
        if self.finished:
            raise ValueError("the stream is finished")
        if len(plain) > FRAME:
            raise ValueError("a frame holds at most 64 KiB")
        header = _HEADER.pack((len(plain) + 16) | (_LAST if last else 0))
        sealed = self._aead.encrypt(self._number.to_bytes(12, "big"), plain, header)
        self._number += 1
        self.finished = last
        return header + sealed

    def head(self, document: dict[str, Any], last: bool = False) -> bytes:
        """The JSON head, length first, in as many frames as it needs (a listing of many
        blocks is larger than one frame); no data shares its frames."""
        body = json.dumps(document).encode()
        if len(body) > _MAX_HEAD:
            raise ValueError("a sealed head is larger than 64 MiB")
        whole = _HEADER.pack(len(body)) + body
        pieces = [whole[i : i + FRAME] for i in range(0, len(whole), FRAME)]
        return b"".join(
            self.frame(piece, last and i == len(pieces) - 1) for i, piece in enumerate(pieces)
        )


class FrameOpener:
    """Opens one direction's frames from a blocking ``read(n)``, in order; b"" after the
    last frame, SealedStreamBroken if the stream ends before it or anything is altered."""

    def __init__(self, read: Callable[[int], bytes], request_key: bytes, direction: bytes) -> None:
        self._read = read
        self._aead = _key(request_key, direction)
        self._number = 0
        self._done = False

    def next(self) -> bytes:
        if self._done:
            return b""
        header = self._exactly(_HEADER.size)
        (word,) = _HEADER.unpack(header)
        size = word & ~_LAST
        if not 16 <= size <= _MAX_CIPHERTEXT:
            raise SealedStreamBroken("a sealed frame has an impossible length")
        try:
            plain = self._aead.decrypt(
                self._number.to_bytes(12, "big"), self._exactly(size), header
            )
        except InvalidTag:
            raise SealedStreamBroken(
                "a sealed frame does not open (altered, reordered or not for this request)"
            ) from None
        self._number += 1
        self._done = bool(word & _LAST)
        return plain

    def head(self) -> dict[str, Any]:
        first = self.next()
        if len(first) < _HEADER.size:
            raise SealedStreamBroken("a sealed head is too short")
        size = int(_HEADER.unpack(first[: _HEADER.size])[0])
        if size > _MAX_HEAD:
            raise SealedStreamBroken("a sealed head claims more than 64 MiB")
        body = bytearray(first[_HEADER.size :])
        while len(body) < size:
            piece = self.next()
            if not piece:
                raise SealedStreamBroken("a sealed head was cut short")
            body += piece
        try:
            document = json.loads(body[:size]) if len(body) == size else None
        except (ValueError, RecursionError):  # anyone may seal to the service's key
            document = None
        if not isinstance(document, dict):
            raise SealedStreamBroken("a sealed head is not a JSON object of its stated size")
        return document

    @property
    def done(self) -> bool:
        return self._done

    def _exactly(self, count: int) -> bytes:
        parts, left = [], count
        while left:
            piece = self._read(left)
            if not piece:
                raise SealedStreamBroken("the sealed stream was cut short")
            parts.append(piece)
            left -= len(piece)
        return b"".join(parts)


class OpenedReader:
    """The data frames after a head, as a blocking file object (what Node.store reads)."""

    def __init__(self, opener: FrameOpener) -> None:
        self._opener = opener
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (at most one frame's worth at a time); everything left
        for a negative size; b"" once the last frame is read."""
        if size < 0:
            rest = [self._buffer]
            while not self._opener.done:
                rest.append(self._opener.next())
            self._buffer = b""
            return b"".join(rest)
        while not self._buffer and not self._opener.done:
            self._buffer = self._opener.next()
        piece, self._buffer = self._buffer[:size], self._buffer[size:]
        return piece


class SealedWriter:
    """A blocking file object that seals what is written into data frames; ``finish``
    writes the last frame. Not finishing leaves the stream visibly cut short."""

    def __init__(self, sealer: FrameSealer, emit: Callable[[bytes], object]) -> None:
        self._sealer = sealer
        self._emit = emit
        self._buffer = bytearray()

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) >= FRAME:
            self._emit(self._sealer.frame(bytes(self._buffer[:FRAME])))
            del self._buffer[:FRAME]
        return len(data)

    def flush(self) -> None:
        """Frames are sent whole; a partial one waits for more data or ``finish``."""

    def writable(self) -> bool:
        return True

    def finish(self) -> None:
        self._emit(self._sealer.frame(bytes(self._buffer), last=True))
        self._buffer.clear()
