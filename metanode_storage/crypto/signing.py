"""The node's long-lived signing identity: Ed25519 (PyNaCl, the faster binding here),
and for a TLSLS hybrid key also ML-DSA-65 (FIPS 204, from ``cryptography``).

A hybrid key signs what must outlast a quantum adversary (proof seals, checkpoints, key
hand-overs) with both halves, and a verifier requires both. Its key id is the first 16
hex digits of SHA-256(Ed25519 public key || ML-DSA-65 public key), so it names both
halves: a proof with the ML-DSA half stripped names a key id no one trusts. An
Ed25519-only key keeps the id it always had, SHA-256(Ed25519 public key).
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from metanode_storage.config.secrets import Secret

SIGNATURE_SIZE = 64
ML_DSA_SIGNATURE_SIZE = 3309
ML_DSA_PUBLIC_KEY_SIZE = 1952
# ML-DSA's context string: a metanode signature never verifies for another protocol.
_ML_DSA_CONTEXT = b"metanode"


def key_id_of(public_key: bytes, ml_dsa_public_key: bytes | None = None) -> str:
    """A short, stable name for a public key (both halves of a hybrid one)."""
    return sha256(public_key + (ml_dsa_public_key or b"")).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    """A node's public signing key: Ed25519, and ML-DSA-65 when it is a hybrid key."""

    ed25519: bytes
    ml_dsa: bytes | None = None

    @property
    def key_id(self) -> str:
        return key_id_of(self.ed25519, self.ml_dsa)

    @property
    def hybrid(self) -> bool:
        return self.ml_dsa is not None

    def text(self) -> str:
        """What `keys show` prints and `--public-key` takes: Ed25519 hex, then for a
        hybrid key ':' and the ML-DSA-65 key in hex."""
        return self.ed25519.hex() + (f":{self.ml_dsa.hex()}" if self.ml_dsa else "")

    @classmethod
    def parse(cls, text: str) -> PublicKey:
        """``ValueError`` unless ``text`` is one of :meth:`text`'s forms."""
        ed_hex, _, pq_hex = text.strip().partition(":")
        ed = bytes.fromhex(ed_hex)
        pq = bytes.fromhex(pq_hex) if pq_hex else None
        if len(ed) != 32 or (pq is not None and len(pq) != ML_DSA_PUBLIC_KEY_SIZE):
            raise ValueError("not an Ed25519 or Ed25519:ML-DSA-65 public key")
        return cls(ed, pq)

    def verify(self, message: bytes, signature: bytes, ml_dsa_signature: bytes | None) -> bool:
        """Both signatures hold (an Ed25519-only key takes no ML-DSA signature)."""
        if (self.ml_dsa is None) != (ml_dsa_signature is None):
            return False
        if not verify_signature(self.ed25519, message, signature):
            return False
        return self.ml_dsa is None or verify_ml_dsa(self.ml_dsa, message, ml_dsa_signature or b"")


class NodeSigner:
    """Signs with one key; the seeds stay inside and never show in a repr."""

    __slots__ = ("_key", "_pq", "key_id", "public", "public_key")

    def __init__(self, seed: Secret, ml_dsa_seed: Secret | None = None) -> None:
        self._key = SigningKey(seed.reveal())
        self._pq = MLDSA65PrivateKey.from_seed_bytes(ml_dsa_seed.reveal()) if ml_dsa_seed else None
        self.public_key = bytes(self._key.verify_key)
        pq_public = self._pq.public_key().public_bytes_raw() if self._pq else None
        self.public = PublicKey(self.public_key, pq_public)
        self.key_id = self.public.key_id

    @classmethod
    def generate(cls, hybrid: bool = True) -> NodeSigner:
        pq = Secret(MLDSA65PrivateKey.generate().private_bytes_raw()) if hybrid else None
        return cls(Secret(bytes(SigningKey.generate())), pq)

    @property
    def seed(self) -> Secret:
        return Secret(bytes(self._key))

    @property
    def ml_dsa_seed(self) -> Secret | None:
        return Secret(self._pq.private_bytes_raw()) if self._pq else None

    @property
    def hybrid(self) -> bool:
        return self._pq is not None

    def sign(self, message: bytes) -> bytes:
        """Ed25519 alone: for what is checked often and kept short (audit events)."""
        return self._key.sign(message).signature

    def sign_ml_dsa(self, message: bytes) -> bytes | None:
        """The ML-DSA-65 half of a hybrid signature (None for an Ed25519-only key)."""
        return self._pq.sign(message, _ML_DSA_CONTEXT) if self._pq else None

    def __repr__(self) -> str:
        return f"NodeSigner(key_id={self.key_id}, hybrid={self.hybrid})"


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError):
        return False
    return True


def verify_ml_dsa(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        MLDSA65PublicKey.from_public_bytes(public_key).verify(signature, message, _ML_DSA_CONTEXT)
    except (InvalidSignature, ValueError):
        return False
    return True
