"""Directory trees as one container block: the entries, walking them, the manifest.

A tree block's chunks are its files' chunks in walk order, then the manifest's
own chunks. A file larger than the chunker's smallest chunk is chunked on its
own; smaller files share bundles (engine/tree_input.py). Restoring is in
engine/tree_restore.py.

The manifest (JSON, below) names every entry by its path relative to the
tree, with its type, mode and modification time; a file also has its size,
SHA-256, the range of the block's chunks that hold it, and where in the first
of them it starts ("offset", 0 when left out). The block's data hash is the
SHA-256 of the manifest, so the block's signed proof covers the manifest, and
the manifest covers every file. Names exist only inside the sealed chunks: no
provider ever sees one.

    {"v": 2, "entries": [
        {"path": "src", "type": "dir", "mode": 493, "mtime_ns": ...},
        {"path": "src/a.py", "type": "file", "mode": 420, "mtime_ns": ..., "size": 10,
         "sha256": "...", "first_chunk": 0, "chunks": 1, "offset": 4096},
        {"path": "src/link", "type": "symlink", "target": "a.py"}]}

Version 1 manifests (no bundles, every offset 0) are still read.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from metanode_storage.errors import InputError, IntegrityError

MANIFEST_VERSION = 2
_READABLE_VERSIONS = (1, 2)
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
    offset: int = 0  # where the file starts in its first chunk (a bundle)
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
            if self.offset:
                doc["offset"] = self.offset
        return doc


@dataclass
class WalkReport:
    skipped: list[str] = field(default_factory=list)  # devices, sockets, FIFOs
    unreadable: list[str] = field(default_factory=list)  # reported; the rest is stored
    left_out: list[str] = field(default_factory=list)  # the node's own directories
    changed: list[str] = field(default_factory=list)  # written to while they were read

    def refuse(self, entries: Sequence[Entry], strict: bool) -> None:
        """Raise ``InputError`` if the walk found nothing to store (an empty tree block
        would pass for a backup of the paths), or, under ``strict``, anything it could
        not store."""
        if not entries:
            raise InputError(
                "nothing to store: the paths given are this node's own home or providers"
                if self.left_out
                else "nothing to store: " + "; ".join(self.unreadable + self.skipped),
                "store the directories that hold your data",
            )
        if strict and (self.unreadable or self.skipped):
            raise InputError(
                "cannot store everything: " + "; ".join(self.unreadable + self.skipped),
                "fix the paths, or leave --strict off to store the rest",
            )

    def to_dict(self) -> dict[str, list[str]]:
        """As `put --json` gives it, for a single file (all empty) too."""
        return {
            "not_stored": self.unreadable,
            "skipped": self.skipped,
            "left_out": self.left_out,
            "changed": self.changed,
        }


DirectoryId = tuple[int, int]  # (st_dev, st_ino): the same directory by any path to it


def directory_ids(paths: Iterable[Path]) -> set[DirectoryId]:
    """The ids of those of ``paths`` that exist (what ``walk`` is told to leave out)."""
    found = set()
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def lies_within(path: Path, directories: Collection[DirectoryId]) -> bool:
    """Whether ``path``, followed through symlinks, is one of ``directories`` or below one
    (it need not exist yet: its nearest existing ancestor decides)."""
    real = Path(os.path.realpath(path))
    for candidate in (real, *real.parents):
        try:
            info = os.stat(candidate)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in directories:
            return True
    return False


def walk(
    roots: Sequence[Path], report: WalkReport, leave_out: Collection[DirectoryId] = ()
) -> list[Entry]:
    """Every entry below the given paths, in a stable order (parents before children).
    Each root appears under its own name; two roots of the same name are refused. A
    directory in ``leave_out`` is left out with all it holds, and named in the report."""
    # "." and ".." (which pathlib leaves as a name) are their directories' own names: a
    # tree whose root was called ".." could never be restored (an unsafe path)
    names = [root.name if root.name not in ("", "..") else _real_name(root) for root in roots]
    if not all(names):
        raise InputError("the file-system root cannot be stored as a tree", "name a directory")
    if len(set(names)) != len(names):
        raise InputError("two of the paths given have the same name", "store them separately")
    entries: list[Entry] = []
    for root, name in zip(roots, names, strict=True):
        _walk_one(str(root), name, entries, report, leave_out)
    return entries


def _real_name(path: Path) -> str:
    return Path(os.path.realpath(path)).name


def _walk_one(
    path: str, rel: str, out: list[Entry], report: WalkReport, leave_out: Collection[DirectoryId]
) -> None:
    """``path`` on disk, ``rel`` its name in the tree (strings: pathlib costs more than
    the lstat on a tree of many small files). Depth first with a stack of its own, not
    by recursion: a tree may be deeper than Python's recursion limit."""
    pending = [(path, rel)]
    while pending:
        path, rel = pending.pop()
        try:
            info = os.lstat(path)
        except OSError as exc:
            report.unreadable.append(f"{rel}: {exc.strerror}")
            continue
        mode = info.st_mode
        if stat.S_ISLNK(mode):
            out.append(Entry(rel, SYMLINK, target=os.readlink(path)))
        elif stat.S_ISREG(mode):
            out.append(
                Entry(rel, FILE, stat.S_IMODE(mode), info.st_mtime_ns, info.st_size, source=path)
            )
        elif stat.S_ISDIR(mode):
            if (info.st_dev, info.st_ino) in leave_out:
                report.left_out.append(f"{rel}/")
                continue
            out.append(Entry(rel, DIR, stat.S_IMODE(mode), info.st_mtime_ns))
            try:
                children = sorted(os.listdir(path), reverse=True)  # popped in order
            except OSError as exc:
                report.unreadable.append(f"{rel}/: {exc.strerror}")
                continue
            pending.extend((os.path.join(path, c), f"{rel}/{c}") for c in children)
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
        if doc.get("v") not in _READABLE_VERSIONS:
            raise ValueError(f"manifest version {doc.get('v')!r}")
        entries = [Entry(**item) for item in doc["entries"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"the tree's manifest cannot be read: {exc}") from None
    for entry in entries:
        safe_path(entry.path)
        numbers = (entry.size, entry.first_chunk, entry.chunks, entry.offset)
        if not all(type(n) is int and n >= 0 for n in numbers):
            raise IntegrityError(f"the tree's manifest gives {entry.path!r} a bad size or place")
    return entries


def safe_path(text: str) -> str:
    """A relative path that stays below where it is restored, or IntegrityError: not
    absolute, no ".." (and no empty or "." part, which no manifest holds)."""
    if not text or text.startswith("/") or any(p in ("", ".", "..") for p in text.split("/")):
        raise IntegrityError(f"the tree's manifest names an unsafe path {text!r}")
    return text


def select(entries: Sequence[Entry], only: str | None) -> list[Entry]:
    """All entries, or the one named ``only`` (a file or symlink) or that directory's
    subtree, with the directories above it: restored with their own modes and times,
    not left private as a restore first makes them."""
    if only is None:
        return list(entries)
    wanted = str(PurePosixPath(only))
    chosen = [e for e in entries if e.path == wanted or e.path.startswith(wanted + "/")]
    if not chosen:
        raise InputError(f"the tree holds no {only!r}", "list it with `metanode storage ls ID`")
    above = {e.path for e in entries if e.type == DIR and wanted.startswith(e.path + "/")}
    keep = above | {e.path for e in chosen}
    return [e for e in entries if e.path in keep]


def file_entry(entries: Sequence[Entry], path: str) -> Entry:
    """The file at ``path`` in a tree's manifest; ``InputError`` saying what is there
    instead (a symlink, a directory) or that nothing is."""
    found = [e for e in entries if e.path == path.strip("/")]
    if not found:
        raise InputError(f"the tree holds no file {path!r}", "give -o DIR for more")
    if found[0].type != FILE:
        link = found[0].type == SYMLINK
        kind = f"a symlink to {found[0].target!r}" if link else "a directory"
        raise InputError(
            f"{path!r} is {kind} in the tree, not a file",
            f"restore it with -o DIR --path {path}",
        )
    return found[0]


def files_of(entries: Sequence[Entry]) -> Iterator[Entry]:
    return (e for e in entries if e.type == FILE)
