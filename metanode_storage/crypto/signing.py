"""The node's long-lived Ed25519 identity (PyNaCl, the faster of the two bindings here)."""

from __future__ import annotations

from hashlib import sha256

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from metanode_storage.config.secrets import Secret

SIGNATURE_SIZE = 64


def key_id_of(public_key: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return sha256(public_key).hexdigest()[:16]


class NodeSigner:
    """Signs with one Ed25519 key; the seed stays inside and never shows in a repr."""

    __slots__ = ("_key", "key_id", "public_key")

    def __init__(self, seed: Secret) -> None:
        self._key = SigningKey(seed.reveal())
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id_of(self.public_key)

    @classmethod
    def generate(cls) -> NodeSigner:
        return cls(Secret(bytes(SigningKey.generate())))

    @property
    def seed(self) -> Secret:
        return Secret(bytes(self._key))

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"NodeSigner(key_id={self.key_id})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True
