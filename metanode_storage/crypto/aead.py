"""AES-256-GCM sealing with a random 96-bit nonce carried in front of the ciphertext.

Every caller binds what it seals to where it belongs through ``aad``, so a
sealed value moved to another row, blob or file fails to open.
"""

from __future__ import annotations

import hmac
import os
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


class OpenFailed(Exception):
    """The sealed value is not authentic under this key and AAD."""


def new_key() -> bytes:
    return os.urandom(KEY_SIZE)


class Sealer:
    """Seals and opens under one long-lived key (the block map's rows): the AES key
    schedule is made once, not once per row."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes, prefix: bytes = b"") -> bytes:
        """``prefix`` (in clear), the nonce, then the ciphertext and tag: one copy."""
        nonce = os.urandom(NONCE_SIZE)
        return b"".join((prefix, nonce, self._aead.encrypt(nonce, plaintext, aad)))

    def open(self, sealed: bytes | memoryview, aad: bytes) -> bytes:
        """``sealed`` may be a view into a larger buffer (a blob behind its format byte):
        slicing a view copies nothing, and a copy of a 4 MiB chunk is a fresh mapping
        that the kernel must fault in and zero."""
        if len(sealed) < OVERHEAD:
            raise OpenFailed("sealed value is shorter than nonce and tag")
        view = memoryview(sealed)
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], aad)
        except InvalidTag:
            raise OpenFailed("authentication failed") from None


def seal(key: bytes, plaintext: bytes, aad: bytes, prefix: bytes = b"") -> bytes:
    """``prefix`` (in clear), the nonce, then the ciphertext and tag: one copy."""
    return Sealer(key).seal(plaintext, aad, prefix)


def open_sealed(key: bytes, sealed: bytes | memoryview, aad: bytes) -> bytes:
    return Sealer(key).open(sealed, aad)


def keyed_hash(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over length-prefixed parts, so that ("ab", "c") != ("a", "bc")."""
    mac = hmac.new(key, digestmod=sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.digest()
