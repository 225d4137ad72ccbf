"""Directory trees as one container block: walking them, the manifest, restoring them.

A tree block's chunks are every file's chunks, file after file, then the
manifest's own chunks. The manifest (JSON, below) names every entry by its
path relative to the tree, with its type, mode and modification time; a file
also has its size, SHA-256 and the range of the block's chunks that hold it.
The block's data hash is the SHA-256 of the manifest, so the block's signed
proof covers the manifest, and the manifest covers every file. Names exist
only inside the sealed chunks: no provider ever sees one.

    {"v": 1, "entries": [
        {"path": "src", "type": "dir", "mode": 493, "mtime_ns": ...},
        {"path": "src/a.py", "type": "file", "mode": 420, "mtime_ns": ..., "size": 10,
         "sha256": "...", "first_chunk": 0, "chunks": 1},
        {"path": "src/link", "type": "symlink", "target": "a.py"}]}

Restoring writes only below the target directory: a path with "..", an
absolute path or an entry below a symlink is refused, files are opened with
O_NOFOLLOW, and a symlink is created as it was stored (never followed).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from metanode_storage.errors import InputError, IntegrityError

MANIFEST_VERSION = 1
FILE, DIR, SYMLINK = "file", "dir", "symlink"


@dataclass
class Entry:
    path: str  # relative, POSIX separators
    type: str
    mode: int = 0
    mtime_ns: int = 0
    size: int = 0
    sha256: str = ""
    first_chunk: int = 0
    chunks: int = 0
    target: str = ""
    source: str | None = field(default=None, repr=False)  # where to read it (storing only)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path, "type": self.type}
        if self.type == SYMLINK:
            doc["target"] = self.target
            return doc
        doc.update(mode=self.mode, mtime_ns=self.mtime_ns)
        if self.type == FILE:
            doc.update(
                size=self.size,
                sha256=self.sha256,
                first_chunk=self.first_chunk,
                chunks=self.chunks,
            )
        return doc


@dataclass
class WalkReport:
    skipped: list[str] = field(default_factory=list)  # devices, sockets, FIFOs
    unreadable: list[str] = field(default_factory=list)  # reported; the rest is stored


def walk(roots: Sequence[Path], report: WalkReport) -> list[Entry]:
    """Every entry below the given paths, in a stable order (parents before children).
    Each root appears under its own name; two roots of the same name are refused."""
    names = [root.name or root.resolve().name for root in roots]  # "." is its directory's name
    if not all(names):
        raise InputError("the file-system root cannot be stored as a tree", "name a directory")
    if len(set(names)) != len(names):
        raise InputError("two of the paths given have the same name", "store them separately")
    entries: list[Entry] = []
    for root, name in zip(roots, names, strict=True):
        _walk_one(str(root), name, entries, report)
    return entries


def _walk_one(path: str, rel: str, out: list[Entry], report: WalkReport) -> None:
    """``path`` on disk, ``rel`` its name in the tree (strings: pathlib costs more than
    the lstat on a tree of many small files)."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        report.unreadable.append(f"{rel}: {exc.strerror}")
        return
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        out.append(Entry(rel, SYMLINK, target=os.readlink(path)))
    elif stat.S_ISREG(mode):
        out.append(
            Entry(rel, FILE, stat.S_IMODE(mode), info.st_mtime_ns, info.st_size, source=path)
        )
    elif stat.S_ISDIR(mode):
        out.append(Entry(rel, DIR, stat.S_IMODE(mode), info.st_mtime_ns))
        try:
            children = sorted(os.listdir(path))
        except OSError as exc:
            report.unreadable.append(f"{rel}/: {exc.strerror}")
            return
        for child in children:
            _walk_one(os.path.join(path, child), f"{rel}/{child}", out, report)
    else:
        report.skipped.append(f"{rel} (not a file, directory or symlink)")


def manifest_bytes(entries: Sequence[Entry]) -> bytes:
    return json.dumps(
        {"v": MANIFEST_VERSION, "entries": [e.to_dict() for e in entries]},
        separators=(",", ":"),
    ).encode()


def parse_manifest(raw: bytes) -> list[Entry]:
    try:
        doc = json.loads(raw)
        if doc.get("v") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {doc.get('v')!r}")
        entries = [Entry(**item) for item in doc["entries"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the tree's manifest cannot be read: {exc}") from None
    for entry in entries:
        safe_path(entry.path)
    return entries


def safe_path(text: str) -> PurePosixPath:
    """A relative path that stays below where it is restored, or IntegrityError."""
    path = PurePosixPath(text)
    if not text or path.is_absolute() or any(p in ("..", "", ".") for p in path.parts):
        raise IntegrityError(f"the tree's manifest names an unsafe path {text!r}")
    return path


def select(entries: Sequence[Entry], only: str | None) -> list[Entry]:
    """All entries, or the one named ``only`` (a file or symlink) or that directory's subtree."""
    if only is None:
        return list(entries)
    wanted = str(PurePosixPath(only))
    chosen = [e for e in entries if e.path == wanted or e.path.startswith(wanted + "/")]
    if not chosen:
        raise InputError(f"the tree holds no {only!r}", "list it with `metanode storage ls ID`")
    return chosen


def create_parents(target: Path, rel: PurePosixPath, made: set[PurePosixPath]) -> Path:
    """The directory that will hold ``rel`` below ``target``, created as needed; refuses a
    parent that is a symlink (the tree must not write through one of its own links).
    ``made`` remembers the parents already checked in this restore: the tree cannot turn
    one into a symlink later (a symlink or file is never created over an existing path)."""
    parent = rel.parent
    if parent not in made:
        current = target
        for part in parent.parts:
            current = current / part
            if current.is_symlink():
                raise IntegrityError(f"the tree would write below the symlink {current}")
            current.mkdir(exist_ok=True, mode=0o700)
        made.update(parent.parents)
        made.add(parent)
    return target / rel


def open_new_file(path: Path) -> int:
    """A new regular file (never an existing one, never through a symlink)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists already", "restore into an empty directory") from None


def finish(path: Path, entry: Entry) -> None:
    """Mode and modification time, as stored."""
    os.chmod(path, entry.mode, follow_symlinks=False)
    os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)


def files_of(entries: Sequence[Entry]) -> Iterator[Entry]:
    return (e for e in entries if e.type == FILE)
