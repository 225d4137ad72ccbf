"""What the hosts of one node share besides the map, when the map is in PostgreSQL.

A node whose block map, trail and leases live in a shared database
(``distributed init --map postgresql://...``) has one home per host. Each home
keeps the files every run reads first (``config.toml``, ``keystore.mnk``), and
copies of them live in the database's ``shared_files`` table, so that
``distributed join`` can make a new home and a change made on one host (a
provider added, a key rotated) reaches the others at their next run:

- the keystore as it is on disk: sealed under the passphrase (Argon2id), as the
  map backups on every provider hold it;
- the config and the map backups' state, sealed under the map key and bound to
  their name, so the database's operator learns nothing a provider could not.

Each copy has a version. A home remembers, in ``shared.json``, the version and
SHA-256 of what it last took or gave; at each run it takes a newer version, or
gives its own file if it changed here since (compare-and-set on the version, so
two hosts' changes never silently cross). The table has no change triggers: it
is not part of the map and its backups carry the files themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Protocol

from metanode_storage.config.paths import NodeLayout
from metanode_storage.crypto import aead
from metanode_storage.database import MAP_SCHEMA, DatabaseUrl, open_database, translator
from metanode_storage.errors import BlockMapDamaged, ConfigDamaged
from metanode_storage.fileio import atomic_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS shared_files (
    name TEXT PRIMARY KEY, version INTEGER NOT NULL, body BLOB NOT NULL);
"""
CONFIG, KEYSTORE, BACKUP_STATE = "config.toml", "keystore.mnk", "backup-state.json"
RECORD_FILE = "shared.json"


class HomeFile(Protocol):
    """A small state file: in the home, or shared by the node's hosts."""

    def read(self) -> bytes | None: ...
    def write(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class LocalFile:
    path: Path

    def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def write(self, data: bytes) -> None:
        atomic_write(self.path, data)


class SharedFiles:
    """The ``shared_files`` table beside the map in the node's database."""

    def __init__(self, where: DatabaseUrl, map_key: bytes | None = None) -> None:
        self.map_key = map_key  # set once the keystore is open: the sealed files need it
        self._db = open_database(
            where,
            MAP_SCHEMA,
            create=False,
            translate=translator("shared node files", where, BlockMapDamaged),
        )
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, name: str) -> tuple[int, bytes] | None:
        """(version, body as stored) of ``name``, or None if no host gave it yet."""
        row = self._db.execute(
            "SELECT version, body FROM shared_files WHERE name=?", (name,)
        ).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def put(self, name: str, body: bytes, expected: int) -> int | None:
        """Store ``body`` as the version after ``expected`` (0: the first); None when
        another host gave a newer one meanwhile (nothing written)."""
        with self._db.transaction() as db:
            row = db.execute("SELECT version FROM shared_files WHERE name=?", (name,)).fetchone()
            if (int(row[0]) if row else 0) != expected:
                return None
            db.execute(
                "INSERT INTO shared_files VALUES (?, ?, ?) ON CONFLICT (name) "
                "DO UPDATE SET version = excluded.version, body = excluded.body",
                (name, expected + 1, body),
            )
        return expected + 1

    # -- sealed under the map key

    def _aad(self, name: str) -> bytes:
        return b"shared_files\0" + name.encode()

    def seal(self, name: str, plain: bytes) -> bytes:
        assert self.map_key is not None
        return aead.seal(self.map_key, plain, self._aad(name))

    def unseal(self, name: str, sealed: bytes) -> bytes:
        assert self.map_key is not None
        try:
            return aead.open_sealed(self.map_key, sealed, self._aad(name))
        except aead.OpenFailed:
            raise BlockMapDamaged(
                f"the shared copy of {name} failed authentication",
                "it was tampered with in the database, or belongs to another node",
            ) from None


@dataclass
class SharedStateFile:
    """A state file kept only in the database (the map backups' state), sealed."""

    files: SharedFiles
    name: str

    def read(self) -> bytes | None:
        found = self.files.get(self.name)
        return None if found is None else self.files.unseal(self.name, found[1])

    def write(self, data: bytes) -> None:
        sealed = self.files.seal(self.name, data)
        for _ in range(5):  # written under the backup lock: a lost race is a past writer's
            found = self.files.get(self.name)
            if self.files.put(self.name, sealed, found[0] if found else 0) is not None:
                return


def _record(layout: NodeLayout) -> dict[str, dict[str, object]]:
    try:
        doc = json.loads((layout.home / RECORD_FILE).read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}  # lost: the database's copy is taken, the home's own change given again


def sync_file(layout: NodeLayout, files: SharedFiles, name: str, sealed: bool) -> bool:
    """Bring ``name`` in the home and in the database to the same version: take a newer
    one, or give the home's own change. True when the home's file was replaced."""
    path = layout.home / name
    record = _record(layout)
    seen = record.get(name, {})
    for _ in range(5):
        local = path.read_bytes() if path.exists() else None
        remote = files.get(name)
        version = int(str(seen.get("version", 0)))
        changed_here = local is not None and sha256(local).hexdigest() != seen.get("sha256")
        replaced = False
        if remote is not None and remote[0] > version and (not changed_here or not seen):
            local = files.unseal(name, remote[1]) if sealed else remote[1]
            atomic_write(path, local)
            version, replaced = remote[0], True
        elif local is not None and (changed_here or remote is None):
            body = files.seal(name, local) if sealed else local
            given = files.put(name, body, remote[0] if remote else 0)
            if given is None:
                continue  # another host gave a newer version meanwhile: look again
            version = given
        elif remote is not None and remote[0] > version:
            raise ConfigDamaged(
                f"{name} was changed both on this host and on another one",
                f"keep one: delete {path} to take the other host's",
            )
        now = {"version": version, "sha256": sha256(local).hexdigest()} if local else seen
        if now != seen:
            record[name] = now
            atomic_write(layout.home / RECORD_FILE, json.dumps(record).encode())
        return replaced
    raise ConfigDamaged(f"{name} keeps changing on other hosts", "retry in a moment")


def sync_home(layout: NodeLayout, files: SharedFiles) -> None:
    """The keystore, then the config (which needs the map key the keystore holds)."""
    sync_file(layout, files, KEYSTORE, sealed=False)
    sync_file(layout, files, CONFIG, sealed=True)
