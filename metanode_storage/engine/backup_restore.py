"""Recovery from an incremental map backup (the format: engine/backup_log.py).

Everything is checked before anything is placed: every part against the
snapshot's SHA-256, every segment against the head's list, its position and
its snapshot (AEAD associated data), so a gap, a reordering or a segment of
an older snapshot is refused and the home is left as it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import zstandard

from metanode_storage.audit.trail import AuditTrail
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.crypto import aead
from metanode_storage.engine.backup import Locator
from metanode_storage.engine.backup_log import (
    HEAD_AAD,
    PART_AAD,
    PART_SIZE,
    SEGMENT_AAD,
    piece_name,
    position,
    unpad,
)
from metanode_storage.engine.backup_snapshot import MANIFEST, PLAIN_FILES, SQLITE_FILES
from metanode_storage.errors import KeystoreDamaged, ObjectNotFound
from metanode_storage.fileio import install_files
from metanode_storage.jsonbytes import decode
from metanode_storage.providers.base import BlobStore


class BackupLogDamaged(KeystoreDamaged):
    """A backup log that does not hold together: a gap, a reordering, a foreign piece."""

    reference = "MN-205"


@dataclass(frozen=True)
class RecoveredLog:
    node_id: str
    created_at: int
    files: list[str]
    segments: int


def open_head(store: BlobStore, locator: Locator, sealed: bytes) -> dict[str, Any] | None:
    """The v2 head in ``sealed``, or None when it is not one (a v1 full bundle)."""
    try:
        doc = json.loads(aead.open_sealed(locator.seal_key.reveal(), sealed, HEAD_AAD))
    except aead.OpenFailed:
        return None
    if not isinstance(doc, dict) or doc.get("v") != 2:
        raise BackupLogDamaged(f"the map backup head on {store.name} has an unknown format")
    return doc


def _fetch(store: BlobStore, key: str, what: str) -> bytes:
    try:
        return store.get(key)
    except ObjectNotFound:
        raise BackupLogDamaged(
            f"the map backup on {store.name} is missing {what}",
            "recover from another provider",
        ) from None


def restore_log(
    home: Path,
    store: BlobStore,
    locator: Locator,
    head: Mapping[str, Any],
    reseal: Callable[[bytes], bytes] | None = None,
) -> RecoveredLog:
    """Rebuild the node's files in ``home`` from the snapshot and every segment in order;
    ``reseal`` turns the keystore's bytes into what the recovered home keeps (before the
    config makes the home a node)."""
    key = locator.seal_key.reveal()
    snap = head["snapshot"]
    snapshot_id, parts = str(snap["id"]), int(snap["parts"])
    decompressor = zstandard.ZstdDecompressor()
    with tempfile.TemporaryDirectory(dir=home, prefix=".recovering-") as tmp:
        stream = Path(tmp) / "stream"
        whole = sha256()
        with open(stream, "wb") as out:
            for index in range(parts):
                sealed = _fetch(
                    store, piece_name(locator, "part", snapshot_id, index), f"part {index}"
                )
                try:
                    packed = aead.open_sealed(key, sealed, position(PART_AAD, snapshot_id, index))
                except aead.OpenFailed:
                    raise BackupLogDamaged(
                        f"part {index} of the snapshot on {store.name} does not belong there"
                    ) from None
                piece = decompressor.decompress(packed, max_output_size=PART_SIZE)
                out.write(piece)
                whole.update(piece)
        if whole.hexdigest() != snap["sha256"]:
            raise BackupLogDamaged(f"the snapshot on {store.name} does not match its head")
        written = _unpack_stream(stream, home)
        try:
            changes = list(_segments(store, locator, head))  # all checked before any is used
        except BaseException:
            for leftover in written.values():
                leftover.unlink(missing_ok=True)
            raise
    install_files(
        [(target, home / name) for name, target in written.items() if name in SQLITE_FILES]
    )
    blockmap = BlockMap(home / "blockmap.sqlite", bytes(32))  # rows replay sealed: no key
    trail = AuditTrail(home / "audit.sqlite", "")
    files: dict[str, bytes] = {}
    try:
        for segment in changes:
            blockmap.apply_changes(segment["map"])
            trail.restore_rows(segment["audit"])
            files.update(segment["files"])
    finally:
        blockmap.close()
        trail.close()
    for name in PLAIN_FILES:  # config last: the home counts as initialised only then
        target = written[name]
        if name in files:
            target.write_bytes(files[name])
    if reseal is not None:
        keystore = written["keystore.mnk"]
        keystore.write_bytes(reseal(keystore.read_bytes()))
    install_files([(written[name], home / name) for name in ("keystore.mnk", "config.toml")])
    return RecoveredLog(
        str(head["node_id"]), int(head["written_at"]), sorted(written), len(changes)
    )


def _unpack_stream(stream: Path, home: Path) -> dict[str, Path]:
    """Write each file of a snapshot stream beside its final place; their paths by name."""
    written = {}
    with open(stream, "rb") as fh:
        (length,) = MANIFEST.unpack(fh.read(MANIFEST.size))
        manifest = json.loads(fh.read(length))
        for entry in manifest["files"]:
            name = os.path.basename(str(entry["name"]))  # never outside the home
            if name not in (*PLAIN_FILES, *SQLITE_FILES):
                raise BackupLogDamaged(f"the snapshot holds an unexpected file {name!r}")
            target = home / f".{name}.recovering"
            digest, left = sha256(), int(entry["size"])
            with open(target, "wb") as out:
                while left:
                    piece = fh.read(min(left, 1 << 20))
                    if not piece:
                        raise BackupLogDamaged("the snapshot stream ends early")
                    out.write(piece)
                    digest.update(piece)
                    left -= len(piece)
            os.chmod(target, 0o600)
            if digest.hexdigest() != entry["sha256"]:
                raise BackupLogDamaged(f"the snapshot's copy of {name} is damaged")
            written[name] = target
    return written


def _segments(
    store: BlobStore, locator: Locator, head: Mapping[str, Any]
) -> Iterator[dict[str, Any]]:
    """Each segment, checked against the head's list: in place, in order, of this snapshot."""
    key = locator.seal_key.reveal()
    snapshot_id = str(head["snapshot"]["id"])
    prev = str(head["snapshot"]["sha256"])
    decompressor = zstandard.ZstdDecompressor()
    for index, expected in enumerate(head["segments"]):
        sealed = _fetch(
            store, piece_name(locator, "segment", snapshot_id, index), f"segment {index} (a gap)"
        )
        try:
            padded = aead.open_sealed(key, sealed, position(SEGMENT_AAD, snapshot_id, index))
            framed = decompressor.decompress(unpad(padded), max_output_size=1 << 34)
        except (aead.OpenFailed, ValueError, zstandard.ZstdError):
            raise BackupLogDamaged(
                f"segment {index} on {store.name} does not belong at that place "
                "(reordered, or from another snapshot)"
            ) from None
        if sha256(framed).hexdigest() != expected:
            raise BackupLogDamaged(f"segment {index} on {store.name} does not match its head")
        line, _, body = framed.partition(b"\n")
        place = json.loads(line)
        if place != {"snapshot": snapshot_id, "index": index, "prev": prev}:
            raise BackupLogDamaged(f"segment {index} on {store.name} is out of its chain")
        prev = expected
        yield decode(json.loads(body))
