"""The keystore: every key of the node in one file, sealed under the passphrase.

File layout (all integers big-endian)::

    offset  size  field
    0       4     magic  b"MNKS"
    4       1     format version (1; 2 with escrow copies)
    5       4     header length H
    9       H     header, UTF-8 JSON: the Argon2id parameters and salt, and
                  "check", an HMAC that tells a wrong passphrase from a damaged file;
                  in version 2 also "escrow": [{"recipient", "bytes"}]
    9+H     E     version 2: the key material sealed to each recovery recipient
                  (crypto/xwing.py), back to back, as the header lists them
    9+H+E   ...   AES-256-GCM(nonce || ciphertext || tag) of the key material
                  (UTF-8 JSON); the associated data is every byte before it

The passphrase goes through Argon2id to 64 bytes: the first 32 seal the key
material, the last 32 key the check value. The escrow copies are written in
the same file, so a keystore and its copies for recovery never disagree.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto import aead
from metanode_storage.crypto.kdf import KdfParams, derive
from metanode_storage.crypto.signing import NodeSigner, PublicKey
from metanode_storage.crypto.xwing import (
    WrongIdentity,
    XWingIdentity,
    XWingRecipient,
)
from metanode_storage.errors import KeystoreDamaged, NodeBusy, WrongPassphrase
from metanode_storage.fileio import atomic_write

MAGIC = b"MNKS"
FORMAT_VERSION = 1
ESCROW_FORMAT_VERSION = 2  # a keystore with escrow copies: older tools say "upgrade"
_ESCROW_INFO = b"metanode keystore escrow v1"
_PREFIX = 9  # magic, version, header length
_CHECK_LABEL = b"metanode keystore passphrase check v1"


@dataclass(frozen=True)
class SigningKeyRecord:
    seed: Secret
    created_at: int
    retired_at: int | None = None
    ml_dsa_seed: Secret | None = None  # a TLSLS hybrid key's ML-DSA-65 half

    @classmethod
    def of(cls, signer: NodeSigner, created_at: int) -> SigningKeyRecord:
        return cls(signer.seed, created_at, None, signer.ml_dsa_seed)

    @property
    def signer(self) -> NodeSigner:
        return NodeSigner(self.seed, self.ml_dsa_seed)


@dataclass(frozen=True)
class DataKey:
    """A key-encryption key: it wraps the per-chunk data keys."""

    key_id: str
    key: Secret
    created_at: int


@dataclass
class KeyMaterial:
    signing_keys: list[SigningKeyRecord]
    data_keys: list[DataKey]
    current_data_key: str
    dedup_key: Secret  # keys chunk content addresses, so equal chunks dedup without exposing hashes
    name_key: Secret  # keys blob names on providers
    map_key: Secret  # seals the rows of the block map
    # Cloud credentials the operator chose to keep here rather than in the SDK's sources,
    # by provider name, then by field (access_key_id, connection_string, ...).
    provider_credentials: dict[str, dict[str, Secret]] = field(default_factory=dict)
    # Per provider, where its map backup lives and the key that seals it (hex), derived
    # once from the passphrase by engine/backup.py and kept here to spare the KDF.
    backup_locators: dict[str, Secret] = field(default_factory=dict)
    # Bearer token for the `distributed start` service's API.
    api_token: Secret = field(default_factory=lambda: Secret(secrets.token_urlsafe(32).encode()))
    # Recovery recipients (their text form): every write seals a copy of this material
    # to each, and the map backups tell each where they are (engine/escrow.py).
    recovery_recipients: list[str] = field(default_factory=list)
    _signer: NodeSigner | None = field(default=None, repr=False, compare=False)

    @classmethod
    def generate(cls) -> KeyMaterial:
        now = int(time.time())
        data_key = DataKey(os.urandom(8).hex(), Secret(aead.new_key()), now)
        return cls(
            signing_keys=[SigningKeyRecord.of(NodeSigner.generate(), now)],
            data_keys=[data_key],
            current_data_key=data_key.key_id,
            dedup_key=Secret(aead.new_key()),
            name_key=Secret(aead.new_key()),
            map_key=Secret(aead.new_key()),
        )

    @property
    def signer(self) -> NodeSigner:
        """The current signing key: the newest one that is not retired."""
        if self._signer is None:
            active = [k for k in self.signing_keys if k.retired_at is None]
            self._signer = active[-1].signer
        return self._signer

    @property
    def owner_key(self) -> bytes:
        """Keys the ownership tag in this node's blob names (engine/blobformat.py)."""
        return aead.keyed_hash(self.name_key.reveal(), b"blob owner key v1")

    def public_keys(self) -> dict[str, PublicKey]:
        """Every signing key's public half, retired ones included, by key id."""
        signers = (k.signer for k in self.signing_keys)
        return {s.key_id: s.public for s in signers}

    @property
    def recipients(self) -> list[XWingRecipient]:
        return [XWingRecipient.parse(text) for text in self.recovery_recipients]

    def data_key(self, key_id: str) -> bytes:
        for key in self.data_keys:
            if key.key_id == key_id:
                return key.key.reveal()
        raise KeystoreDamaged(
            f"data key {key_id} is not in the keystore",
            "the keystore is older than the data; restore the newest keystore",
        )

    def _to_json(self) -> bytes:
        return json.dumps(
            {
                "signing_keys": [
                    {
                        "seed": k.seed.reveal().hex(),
                        "created_at": k.created_at,
                        "retired_at": k.retired_at,
                        **({"ml_dsa_seed": k.ml_dsa_seed.reveal().hex()} if k.ml_dsa_seed else {}),
                    }
                    for k in self.signing_keys
                ],
                "data_keys": [
                    {"key_id": k.key_id, "key": k.key.reveal().hex(), "created_at": k.created_at}
                    for k in self.data_keys
                ],
                "current_data_key": self.current_data_key,
                "dedup_key": self.dedup_key.reveal().hex(),
                "name_key": self.name_key.reveal().hex(),
                "map_key": self.map_key.reveal().hex(),
                "api_token": self.api_token.reveal().decode(),
                "recovery_recipients": self.recovery_recipients,
                "backup_locators": {
                    n: v.reveal().decode() for n, v in self.backup_locators.items()
                },
                "provider_credentials": {
                    name: {k: v.reveal().hex() for k, v in fields.items()}
                    for name, fields in self.provider_credentials.items()
                },
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def _from_json(cls, raw: bytes) -> KeyMaterial:
        doc = json.loads(raw)
        material = cls(
            signing_keys=[
                SigningKeyRecord(
                    Secret(bytes.fromhex(k["seed"])),
                    k["created_at"],
                    k["retired_at"],
                    Secret(bytes.fromhex(k["ml_dsa_seed"])) if k.get("ml_dsa_seed") else None,
                )
                for k in doc["signing_keys"]
            ],
            data_keys=[
                DataKey(k["key_id"], Secret(bytes.fromhex(k["key"])), k["created_at"])
                for k in doc["data_keys"]
            ],
            current_data_key=doc["current_data_key"],
            dedup_key=Secret(bytes.fromhex(doc["dedup_key"])),
            name_key=Secret(bytes.fromhex(doc["name_key"])),
            map_key=Secret(bytes.fromhex(doc["map_key"])),
            provider_credentials={
                name: {k: Secret(bytes.fromhex(v)) for k, v in fields.items()}
                for name, fields in doc.get("provider_credentials", {}).items()
            },
            backup_locators={
                n: Secret(v.encode()) for n, v in doc.get("backup_locators", {}).items()
            },
        )
        material.recovery_recipients = [str(r) for r in doc.get("recovery_recipients", [])]
        if "api_token" in doc:
            material.api_token = Secret(doc["api_token"].encode())
        return material


def _check_value(check_key: bytes) -> str:
    return hmac.new(check_key, _CHECK_LABEL, sha256).hexdigest()


def _header_digest(header: dict[str, object]) -> str:
    """SHA-256 of the header without its own digest: tells a damaged header (a changed
    salt or cost) from a wrong passphrase. Not a secret, and not an authenticator: the
    AEAD below covers the header against tampering."""
    rest = {k: v for k, v in header.items() if k != "header_sha256"}
    return sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()


def seal_keystore(material: KeyMaterial, passphrase: Secret, params: KdfParams) -> bytes:
    derived = derive(passphrase.reveal(), params)
    plain = material._to_json()
    header: dict[str, object] = dict(params.as_header(), check=_check_value(derived[32:]))
    copies = [(r.fingerprint, r.seal(plain, _ESCROW_INFO)) for r in material.recipients]
    if copies:
        header["escrow"] = [{"recipient": fp, "bytes": len(sealed)} for fp, sealed in copies]
    header["header_sha256"] = _header_digest(header)
    header_bytes = json.dumps(header, sort_keys=True).encode()
    version = ESCROW_FORMAT_VERSION if copies else FORMAT_VERSION
    prefix = (
        MAGIC
        + bytes([version])
        + len(header_bytes).to_bytes(4, "big")
        + header_bytes
        + b"".join(sealed for _, sealed in copies)
    )
    return aead.seal(derived[:32], plain, prefix, prefix=prefix)


def open_keystore_with_identity(
    raw: bytes, identity: XWingIdentity, where: str = "keystore"
) -> KeyMaterial:
    """The key material from the copy sealed to ``identity``'s recipient (no passphrase)."""
    header = _parse_header(raw, where)
    fingerprint = identity.recipient.fingerprint
    offset = header.end
    for entry_fingerprint, size in header.escrow:
        if entry_fingerprint == fingerprint:
            plain = identity.open(raw[offset : offset + size], _ESCROW_INFO)
            try:
                return KeyMaterial._from_json(plain)
            except (ValueError, KeyError, TypeError):
                raise _damaged(where) from None
        offset += size
    raise WrongIdentity(
        f"{where} holds no copy for recovery recipient {fingerprint}",
        "use the identity whose recipient was given to `keys escrow --to`"
        if header.escrow
        else "this node never had a recovery recipient (`keys escrow --to`)",
    )


# Gives the Argon2id output for a keystore's parameters without the caller running it
# (a session agent that already did): see metanode_storage/session.
KeyDeriver = Callable[[KdfParams], bytes]


@dataclass(frozen=True)
class _Header:
    params: KdfParams
    check: str
    end: int  # where the header ends (and the escrow copies begin)
    escrow: list[tuple[str, int]]  # (recipient fingerprint, bytes) of each copy
    body: int  # where the passphrase-sealed key material begins


def _parse_header(raw: bytes, where: str) -> _Header:
    """A keystore's header, or KeystoreDamaged."""
    if len(raw) < _PREFIX or raw[:4] != MAGIC:
        raise _damaged(where)
    if raw[4] not in (FORMAT_VERSION, ESCROW_FORMAT_VERSION):
        raise KeystoreDamaged(
            f"{where} has format version {raw[4]}, this tool reads "
            f"{FORMAT_VERSION} and {ESCROW_FORMAT_VERSION}",
            "upgrade metanode-storage",
        )
    header_len = int.from_bytes(raw[5:9], "big")
    end = _PREFIX + header_len
    try:
        header = json.loads(raw[_PREFIX:end])
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        digest = header.get("header_sha256")  # absent in keystores from before 0.2
        if digest is not None and digest != _header_digest(header):
            raise ValueError("the header does not match its checksum")
        escrow = [(str(e["recipient"]), int(e["bytes"])) for e in header.get("escrow", [])]
        if bool(escrow) != (raw[4] == ESCROW_FORMAT_VERSION):
            raise ValueError("the escrow copies do not match the format version")
        body = end + sum(size for _, size in escrow)
        if len(raw) < body + aead.OVERHEAD or any(size <= 0 for _, size in escrow):
            raise ValueError("the file is shorter than its header says")
        return _Header(KdfParams.from_header(header), str(header["check"]), end, escrow, body)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeystoreDamaged(
            f"{where} has a damaged header: {exc}", "restore the keystore file from a backup"
        ) from None


def _damaged(where: str) -> KeystoreDamaged:
    return KeystoreDamaged(
        f"{where} is damaged or not a keystore", "restore the keystore file from a backup"
    )


def open_keystore_bytes(
    raw: bytes, passphrase: Secret, where: str = "keystore", derive_key: KeyDeriver | None = None
) -> KeyMaterial:
    header = _parse_header(raw, where)
    derived = (
        derive_key(header.params) if derive_key else derive(passphrase.reveal(), header.params)
    )
    if not hmac.compare_digest(_check_value(derived[32:]), header.check):
        raise WrongPassphrase(
            "wrong passphrase for the keystore",
            "check METANODE_PASSPHRASE; the passphrase cannot be recovered",
        )
    try:
        sealed, prefix = raw[header.body :], raw[: header.body]
        return KeyMaterial._from_json(aead.open_sealed(derived[:32], sealed, prefix))
    except (aead.OpenFailed, ValueError, KeyError, TypeError):
        raise _damaged(where) from None


def write_keystore(
    path: Path, material: KeyMaterial, passphrase: Secret, params: KdfParams
) -> None:
    """Write atomically with owner-only permissions."""
    atomic_write(path, seal_keystore(material, passphrase, params), 0o600)


def update_keystore(
    path: Path, passphrase: Secret, change: Callable[[KeyMaterial], None]
) -> KeyMaterial:
    """Open, change and rewrite the keystore, keeping its KDF cost (with a fresh salt).

    The read, change and write happen under an exclusive lock on ``keystore.lock``,
    so two runs rotating a token and adding backup locators at once never lose
    each other's change (the write itself is atomic: unique temp name, fsync, rename).
    """
    with _exclusive(path.with_name(path.name + ".lock")):
        material = read_keystore(path, passphrase)
        params = keystore_params(path)
        change(material)
        material._signer = None  # the signing keys may have changed
        fresh = KdfParams.fresh(params.iterations, params.memory_kib, params.lanes)
        write_keystore(path, material, passphrase, fresh)
    return material


@contextmanager
def _exclusive(lock_path: Path, timeout: float = 60.0) -> Iterator[None]:
    """An flock held for the block: the kernel drops it if the holder dies."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise NodeBusy(
                        "another run has been changing the keystore for over a minute",
                        "retry when it has finished",
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def keystore_params(path: Path) -> KdfParams:
    """The KDF parameters in a keystore's header (what unlocking it costs)."""
    return keystore_header_params(_read(path), f"keystore {path}")


def keystore_header_params(raw: bytes, where: str = "keystore") -> KdfParams:
    return _parse_header(raw, where).params


def read_keystore(
    path: Path, passphrase: Secret, derive_key: KeyDeriver | None = None
) -> KeyMaterial:
    return open_keystore_bytes(_read(path), passphrase, f"keystore {path}", derive_key)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise KeystoreDamaged(
            f"the keystore {path} is missing",
            "restore it from a backup; without it the data cannot be read",
        ) from None
    except OSError as exc:
        raise KeystoreDamaged(
            f"cannot read the keystore {path}: {exc.strerror}", "check the file and its permissions"
        ) from None
