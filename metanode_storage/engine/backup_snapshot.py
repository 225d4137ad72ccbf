"""A map backup's snapshot: the node's state as one stream, staged in the home.

The stream (engine/backup_log.py uploads it in sealed parts; engine/backup_restore.py
reads it back) is a u32 manifest length, the manifest JSON ``{"files": [{"name",
"size", "sha256"}]}``, then the files back to back: the config and keystore as they
are, the block map and audit trail as consistent SQLite copies (whether the node keeps
them in the home or shares them in PostgreSQL, a snapshot restores into either).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

from metanode_storage.audit.trail import AuditTrail
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.config.paths import NodeLayout
from metanode_storage.errors import LocalStateError

SQLITE_FILES = ("blockmap.sqlite", "audit.sqlite")
PLAIN_FILES = ("config.toml", "keystore.mnk")
MANIFEST = struct.Struct(">I")


@dataclass
class Snapshot:
    """A snapshot stream written once to a local temp file, uploaded to each provider."""

    path: Path
    size: int
    sha256: str
    change_mark: int
    events_mark: int
    checkpoints_mark: int
    files: dict[str, str]


@contextmanager
def staging(home: Path) -> Iterator[Path]:
    """A private temporary directory in the home, where a snapshot is put together
    before it is uploaded (removed afterwards)."""
    try:
        made = tempfile.TemporaryDirectory(dir=home, prefix=".backup-")
    except OSError as exc:
        raise _not_staged(home, exc) from None
    with made as tmp:
        yield Path(tmp)


def take_snapshot(layout: NodeLayout, blockmap: BlockMap, trail: AuditTrail, tmp: Path) -> Snapshot:
    """The node's state as a snapshot stream in ``tmp`` (``staging``)."""
    try:
        return _write_snapshot(layout, blockmap, trail, tmp)
    except (OSError, sqlite3.Error) as exc:
        raise _not_staged(layout.home, exc) from None


def _not_staged(home: Path, exc: Exception) -> LocalStateError:
    """Staging a snapshot failed (the home's disk is full): the command's own work stands;
    the backup is a warning and the next change retries it (Node.housekeeping)."""
    return LocalStateError(
        f"the map backup's snapshot could not be staged in {home}: {exc}",
        "free space on that disk; the next change, or `backup-map`, writes it",
    )


def _write_snapshot(
    layout: NodeLayout, blockmap: BlockMap, trail: AuditTrail, tmp: Path
) -> Snapshot:
    copies = {name: tmp / name for name in SQLITE_FILES}
    # consistent SQLite copies, whether the node keeps its map in the home or shares
    # it in PostgreSQL: a snapshot restores into either
    blockmap.copy_to(copies["blockmap.sqlite"])
    trail.copy_to(copies["audit.sqlite"])
    for name in PLAIN_FILES:
        copies[name] = Path(shutil.copyfile(layout.home / name, tmp / name))
    with closing(sqlite3.connect(copies["blockmap.sqlite"])) as db:
        change_mark = _one(db, "SELECT COALESCE(MAX(seq), 0) FROM changes")
    with closing(sqlite3.connect(copies["audit.sqlite"])) as db:
        events_mark = _one(db, "SELECT COALESCE(MAX(seq) + 1, 0) FROM events")
        checkpoints_mark = _one(db, "SELECT COALESCE(MAX(size), 0) FROM checkpoints")
    manifest = []
    for name in (*PLAIN_FILES, *SQLITE_FILES):
        digest = sha256()
        with open(copies[name], "rb") as fh:
            for piece in iter(lambda: fh.read(1 << 20), b""):
                digest.update(piece)
        manifest.append(
            {"name": name, "size": copies[name].stat().st_size, "sha256": digest.hexdigest()}
        )
    files = {str(e["name"]): str(e["sha256"]) for e in manifest if e["name"] in PLAIN_FILES}
    head = json.dumps({"files": manifest}).encode()
    stream = tmp / "stream"
    whole = sha256()
    with open(stream, "wb") as out:
        for piece in (MANIFEST.pack(len(head)), head):
            out.write(piece)
            whole.update(piece)
        for entry in manifest:
            with open(copies[str(entry["name"])], "rb") as fh:
                for piece in iter(lambda: fh.read(1 << 20), b""):
                    out.write(piece)
                    whole.update(piece)
    return Snapshot(
        stream,
        stream.stat().st_size,
        whole.hexdigest(),
        change_mark,
        events_mark,
        checkpoints_mark,
        files,
    )


def _one(db: sqlite3.Connection, query: str) -> int:
    return int(db.execute(query).fetchone()[0])
