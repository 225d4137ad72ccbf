"""Where a node's map backup lives on each provider, and backups of versions before 0.2.

Losing the machine must not lose the data. Since 0.2 the map backup is an
incremental log per provider (engine/backup_log.py); this module says how a
fresh machine finds it with nothing but the passphrase and one provider's
configuration: the blob's name and key come from

    Argon2id(passphrase, salt = SHA-256("metanode map backup v1\\n" || provider name)[:16],
             t=3, m=64 MiB, p=4) -> 64 bytes: name = hex(bytes 0-15), key = bytes 16-47

so the name differs on every provider (nothing links them), and a provider
can neither find nor open it without the passphrase. The KDF runs once per
provider when the provider is set up; the result is kept in the keystore.

Versions before 0.2 wrote one bundle of every file at that name, inside
AES-256-GCM (associated data "metanode map backup v1"); `recover` still reads it::

    b"MNBK" | version (1) | u32 header length | header JSON
        {"node_id", "created_at", "files": [{"name", "offset", "length", "sha256"}]}
    | the files, each zstd-compressed, back to back
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
from contextlib import closing
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import zstandard

from metanode_storage.blockmap.leases import LeaseTable
from metanode_storage.config.paths import NodeLayout
from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.crypto import aead
from metanode_storage.crypto.kdf import KdfParams, derive
from metanode_storage.crypto.xwing import XWingIdentity
from metanode_storage.errors import (
    AlreadyInitialised,
    KeystoreDamaged,
    ObjectNotFound,
    WrongPassphrase,
)
from metanode_storage.fileio import install_files
from metanode_storage.providers.base import BlobStore

MAGIC = b"MNBK"
VERSION = 1
_AAD = b"metanode map backup v1"
_HEAD = struct.Struct(">4sBI")
MIN_COPIES = 2
_SQLITE_FILES = ("blockmap.sqlite", "audit.sqlite")
_PLAIN_FILES = ("config.toml", "keystore.mnk")


@dataclass(frozen=True)
class Locator:
    """Where a provider holds this node's map backup, and the key that seals it."""

    blob_key: str
    seal_key: Secret

    def to_hex(self) -> str:
        return self.blob_key + self.seal_key.reveal().hex()

    @classmethod
    def from_hex(cls, text: str) -> Locator:
        return cls(text[:32], Secret(bytes.fromhex(text[32:])))


def derive_locator(passphrase: Secret, provider_name: str) -> Locator:
    salt = sha256(b"metanode map backup v1\n" + provider_name.encode()).digest()[:16]
    derived = derive(passphrase.reveal(), KdfParams(3, 64 * 1024, 4, salt))
    return Locator(derived[:16].hex(), Secret(derived[16:48]))


@dataclass(frozen=True)
class Recovered:
    node_id: str
    created_at: int
    files: list[str]


def recover_home(
    home: Path,
    passphrase: Secret,
    provider: BlobStore,
    identity: XWingIdentity | None = None,
    map_url: str = "",
    reached_at: ProviderSettings | None = None,
) -> Recovered:
    """Rebuild a node home from the map backup on ``provider``: the incremental log
    (engine/backup_log.py), or a full bundle written by versions before 0.2.
    ``reached_at``: where ``provider`` was reached, which the recovered config then
    keeps for it (``relocate_recovered_provider``).

    With a recovery ``identity``, the backup is found through its pointer and the
    keystore opened with the identity (engine/escrow.py); ``passphrase`` is then the
    recovered node's new passphrase."""
    from metanode_storage.engine.backup_restore import open_head, restore_log
    from metanode_storage.engine.escrow import find_backup, reseal_for_new_passphrase

    layout = NodeLayout(home)
    if layout.config.exists():
        raise AlreadyInitialised(f"a node already exists at {home}", "recover into an empty --home")
    if identity is None:
        locator = derive_locator(passphrase, provider.name)
        missing = "holds no map backup for this passphrase and provider name"
    else:
        locator = find_backup(identity, provider).locator
        missing = "holds a recovery pointer but not the map backup it names"
    try:
        sealed = provider.get(locator.blob_key)
    except ObjectNotFound:
        raise ObjectNotFound(
            provider.name,
            missing,
            "check the passphrase and that --name is the provider's name in the lost node",
        ) from None
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    head = open_head(provider, locator, sealed)
    if head is not None:
        _refuse_another_nodes_home(layout, str(head.get("node_id", "")))
        reseal = None
        if identity is not None:
            reseal = lambda raw: reseal_for_new_passphrase(raw, identity, passphrase)  # noqa: E731
        log = restore_log(home, provider, locator, head, reseal)
        recovered = Recovered(log.node_id, log.created_at, log.files)
    elif identity is None:
        recovered = _recover_bundle(home, provider, locator, sealed)
    else:
        raise KeystoreDamaged(f"the map backup on {provider.name} does not open with the pointer")
    with closing(LeaseTable(layout.blockmap)) as leases:
        leases.clear()  # they were the lost machine's
    from metanode_storage.engine.setup import place_recovered_map, relocate_recovered_provider

    if reached_at is not None:
        relocate_recovered_provider(home, reached_at)
    place_recovered_map(home, passphrase, map_url)
    return recovered


def _refuse_another_nodes_home(layout: NodeLayout, node_id: str) -> None:
    """Recovering into a home whose config.toml was lost rebuilds that node in place; a
    home that holds another node (its trail's checkpoints name another origin) would lose
    its keystore and map to the recovered ones. Read without the key."""
    from metanode_storage.audit.trail import audit_origin

    if not layout.audit.exists():
        return
    try:  # not read-only: checkpoints still in the write-ahead log count too
        with closing(sqlite3.connect(layout.audit)) as db:
            row = db.execute("SELECT note FROM checkpoints LIMIT 1").fetchone()
    except sqlite3.Error:
        return  # no trail there that can be read: nothing of another node to lose
    origin = str(row[0]).split("\n", 1)[0] if row else ""
    if origin and origin != audit_origin(node_id):
        raise AlreadyInitialised(
            f"{layout.home} holds another node ({origin}) whose config.toml is missing",
            "recover into an empty --home",
        )


def _recover_bundle(home: Path, provider: BlobStore, locator: Locator, sealed: bytes) -> Recovered:
    """A version-1 backup: one sealed bundle of every file (see the module docstring)."""
    try:
        bundle = aead.open_sealed(locator.seal_key.reveal(), sealed, _AAD)
    except aead.OpenFailed:
        raise WrongPassphrase("the map backup does not open with this passphrase") from None
    magic, version, header_len = _HEAD.unpack_from(bundle)
    if magic != MAGIC or version != VERSION:
        raise KeystoreDamaged(f"the map backup on {provider.name} has an unknown format")
    header = json.loads(bundle[_HEAD.size : _HEAD.size + header_len])
    body = bundle[_HEAD.size + header_len :]
    decompressor = zstandard.ZstdDecompressor()
    restored = []
    for entry in header["files"]:
        raw = decompressor.decompress(body[entry["offset"] : entry["offset"] + entry["length"]])
        if sha256(raw).hexdigest() != entry["sha256"]:
            raise KeystoreDamaged(f"the map backup's copy of {entry['name']} is damaged")
        name = os.path.basename(entry["name"])  # never write outside the home
        target = home / name
        tmp = target.with_suffix(".recovering")
        tmp.write_bytes(raw)
        os.chmod(tmp, 0o600)
        restored.append((tmp, target))
    # config last: the home counts as initialised only when every other file is in place
    install_files(sorted(restored, key=lambda pair: pair[1].name == "config.toml"))
    return Recovered(header["node_id"], header["created_at"], [t.name for _, t in restored])
