"""TLSLS key encapsulation: X-Wing (ML-KEM-768 + X25519) key pairs, sealing to them.

Two uses. A **recovery identity** is a key pair the operator makes once (`keys
recipient new`) and keeps offline; its public half, the recipient, is given to
the node (`keys escrow --to`), whose keystore then carries its key material
sealed to it, with a pointer on every provider saying where the map backup is
(engine/escrow.py). The **service's transport key** is one the node derives
from its keystore; remote clients seal each request's key to it
(transport/sealed.py).

Sealing is HPKE (RFC 9180) in base mode with the hybrid KEM ML-KEM-768 +
X25519 (``KEM.MLKEM768_X25519`` in `cryptography`, the X-Wing construction),
HKDF-SHA256 and AES-256-GCM: a recording made today stays closed as long as
either ML-KEM-768 or X25519 holds. Base mode does not say who sealed: anyone
holding the recipient could seal something to it, which is why recovery
prints the node id and signing key ids to compare with what the operator
noted (docs/TLSLS.md).

Text forms::

    recipient  mnr1:<base64url of ML-KEM-768 public key (1184 bytes) || X25519 (32)>
    identity   METANODE-RECOVERY-IDENTITY-1:<hex of ML-KEM-768 seed (64) || X25519 (32)>
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto import aead
from metanode_storage.errors import InputError, KeystoreError
from metanode_storage.fileio import create_new

SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
RECIPIENT_PREFIX = "mnr1:"
IDENTITY_PREFIX = "METANODE-RECOVERY-IDENTITY-1:"
_MLKEM_PUBLIC = 1184
_MLKEM_SEED = 64
_X25519 = 32


class WrongIdentity(KeystoreError):
    """The recovery identity given does not open what was sealed (another node's key)."""

    reference = "MN-206"


@dataclass(frozen=True)
class XWingRecipient:
    """The public half: what the node seals to."""

    public_bytes: bytes  # ML-KEM-768 public key || X25519 public key

    @property
    def fingerprint(self) -> str:
        return sha256(b"metanode recovery recipient\0" + self.public_bytes).hexdigest()[:16]

    def text(self) -> str:
        return RECIPIENT_PREFIX + base64.urlsafe_b64encode(self.public_bytes).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> XWingRecipient:
        text = text.strip()
        bad = InputError(
            "that is not a recovery recipient",
            f"give the {RECIPIENT_PREFIX}... line `keys recipient new` printed",
        )
        if not text.startswith(RECIPIENT_PREFIX):
            raise bad
        body = text[len(RECIPIENT_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            recipient = cls(raw)
            recipient._public_key()  # the KEM accepts it
        except (binascii.Error, ValueError):
            raise bad from None
        if len(raw) != _MLKEM_PUBLIC + _X25519:
            raise bad
        return recipient

    def _public_key(self) -> hpke.MLKEM768X25519PublicKey:
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.public_bytes[:_MLKEM_PUBLIC]),
            x25519.X25519PublicKey.from_public_bytes(self.public_bytes[_MLKEM_PUBLIC:]),
        )

    def seal(self, plaintext: bytes, info: bytes) -> bytes:
        """Sealed for this recipient only; ``info`` binds what it is (it must match to open)."""
        return SUITE.encrypt(plaintext, self._public_key(), info=info)

    def blob_name(self, *context: bytes) -> str:
        """A provider blob name the holder of the identity can compute again, and that no
        one without this recipient can link to it or to the node."""
        return aead.keyed_hash(self.public_bytes, b"recovery pointer", *context)[:16].hex()


class XWingIdentity:
    """The private half, kept offline: it opens what was sealed to its recipient."""

    def __init__(self, mlkem_seed: Secret, x25519_private: Secret) -> None:
        self._mlkem_seed = mlkem_seed
        self._x25519 = x25519_private

    @classmethod
    def generate(cls) -> XWingIdentity:
        return cls(
            Secret(mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()),
            Secret(x25519.X25519PrivateKey.generate().private_bytes_raw()),
        )

    @classmethod
    def derive(cls, secret: bytes, label: bytes) -> XWingIdentity:
        """A key pair that ``secret`` always gives again (HKDF-SHA256 under ``label``):
        the service's transport key, from a keystore key, without a keystore change."""
        okm = HKDF(hashes.SHA256(), _MLKEM_SEED + _X25519, None, label).derive(secret)
        return cls(Secret(okm[:_MLKEM_SEED]), Secret(okm[_MLKEM_SEED:]))

    def _private_key(self) -> hpke.MLKEM768X25519PrivateKey:
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self._mlkem_seed.reveal()),
            x25519.X25519PrivateKey.from_private_bytes(self._x25519.reveal()),
        )

    @property
    def recipient(self) -> XWingRecipient:
        ml_kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(self._mlkem_seed.reveal())
        classic = x25519.X25519PrivateKey.from_private_bytes(self._x25519.reveal())
        return XWingRecipient(
            ml_kem.public_key().public_bytes_raw() + classic.public_key().public_bytes_raw()
        )

    def open(self, sealed: bytes, info: bytes) -> bytes:
        try:
            return SUITE.decrypt(sealed, self._private_key(), info=info)
        except (InvalidTag, ValueError):
            raise WrongIdentity(
                "this recovery identity does not open it",
                "use the identity whose recipient was given to `keys escrow --to`",
            ) from None

    def text(self) -> str:
        return IDENTITY_PREFIX + (self._mlkem_seed.reveal() + self._x25519.reveal()).hex()

    @classmethod
    def parse(cls, text: str, where: str = "the identity") -> XWingIdentity:
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith(IDENTITY_PREFIX):
                continue
            try:
                raw = bytes.fromhex(line[len(IDENTITY_PREFIX) :])
            except ValueError:
                break
            if len(raw) == _MLKEM_SEED + _X25519:
                return cls(Secret(raw[:_MLKEM_SEED]), Secret(raw[_MLKEM_SEED:]))
            break
        raise InputError(
            f"{where} is not a recovery identity", "give the file `keys recipient new` wrote"
        )

    @classmethod
    def read(cls, path: Path) -> XWingIdentity:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
            raise InputError(f"cannot read the identity {path}: {reason}") from None
        return cls.parse(text, str(path))

    def write_new(self, path: Path) -> None:
        """Into a new owner-only file; an existing file (or symlink) is never replaced."""
        body = (
            "# metanode-storage recovery identity: it opens the node's keys without the\n"
            "# passphrase. Keep it offline; anyone holding it can read the node's data.\n"
            f"# recipient: {self.recipient.text()}\n"
            f"{self.text()}\n"
        )
        create_new(path, body.encode(), 0o600)
