"""Directory trees as one container block: walking them, the manifest, restoring them.

A tree block's chunks are its files' chunks in walk order, then the manifest's
own chunks. A file larger than the chunker's smallest chunk is chunked on its
own (content-defined, so equal content dedups wherever it sits). Smaller files,
most of a typical tree, are laid one after another into bundles of about a
chunk's size, each stored as one chunk: a file then costs a read and a hash,
not a sealed chunk and a map row of its own. Bundle boundaries fall after files
chosen by a keyed hash of their content, so a tree stored again dedups bundle
by bundle, and an added or changed file changes only the bundle around it.
Equal small files within a tree are stored once.

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

Restoring writes only below the target directory: a path with "..", an
absolute path or an entry below a symlink is refused, files are opened with
O_NOFOLLOW, and a symlink is created as it was stored (never followed).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from metanode_storage.engine.chunker import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK
from metanode_storage.errors import InputError, IntegrityError

MANIFEST_VERSION = 2
_READABLE_VERSIONS = (1, 2)
BUNDLED_UP_TO = MIN_CHUNK  # files this small go into bundles: the chunker would not cut them
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


@dataclass
class Bundle:
    """Small files laid end to end, to be stored as one chunk; ``members`` learn where
    that chunk is once it is written (``place``)."""

    data: bytes
    members: list[Entry]

    def place(self, first_chunk: int) -> None:
        for entry in self.members:
            entry.first_chunk, entry.chunks = first_chunk, 1


class Bundler:
    """Lays small files into bundles of MIN_CHUNK to MAX_CHUNK bytes, about AVG_CHUNK.

    After each file, the bundle ends with a probability of the file's size over
    AVG_CHUNK - MIN_CHUNK, decided by a keyed hash of the file's content: the same
    files give the same bundles, and, as with the chunker's secret cut points, a
    provider cannot tell known files from the sizes of the bundles."""

    def __init__(self, cut_key: bytes) -> None:
        self._cut_key = cut_key
        self._data = bytearray()
        self._members: list[Entry] = []
        self._stored: dict[bytes, tuple[list[Entry], int]] = {}  # SHA-256: where it lies

    def add(self, entry: Entry, data: bytes) -> Bundle | None:
        """Give ``entry`` its size, SHA-256 and offset; a bundle it completed, if any
        (the one before it when it would not fit)."""
        digest = hashlib.sha256(data).digest()
        entry.size, entry.sha256 = len(data), digest.hex()
        if not data:
            return None  # no chunk at all
        if digest in self._stored:  # equal content: the bytes stored once
            members, entry.offset = self._stored[digest]
            members.append(entry)
            return None
        done = self._cut() if len(self._data) + len(data) > MAX_CHUNK else None
        entry.offset = len(self._data)
        self._stored[digest] = (self._members, entry.offset)
        self._data += data
        self._members.append(entry)
        if len(self._data) >= MIN_CHUNK and self._ends_here(digest, len(data)):
            return self._cut()
        return done

    def close(self) -> Bundle | None:
        """The last bundle, if any files are waiting."""
        return self._cut() if self._members else None

    def _ends_here(self, digest: bytes, size: int) -> bool:
        draw = hashlib.blake2b(digest, key=self._cut_key, digest_size=8).digest()
        return int.from_bytes(draw, "big") < (size << 64) // (AVG_CHUNK - MIN_CHUNK)

    def _cut(self) -> Bundle:
        bundle = Bundle(bytes(self._data), self._members)
        self._data, self._members = bytearray(), []
        return bundle


# a small file's bytes, None if it grew past BUNDLED_UP_TO, or why it could not be read
SmallRead = bytes | OSError | None


def read_small_files(
    entries: Sequence[Entry], pool: Executor, window: int = 3
) -> Iterator[SmallRead]:
    """``read_small`` of each entry in turn, read ahead ``window`` batches at a time on
    ``pool``: a tree's files that are not in the page cache are then read several at
    once (the disk or network block device queues them), not one after another."""

    def read_batch(batch: Sequence[Entry]) -> list[SmallRead]:
        found: list[SmallRead] = []
        for entry in batch:
            assert entry.source is not None
            try:
                found.append(read_small(entry.source))
            except OSError as exc:
                found.append(exc)
        return found

    batches = _batches(entries)
    ahead: deque[Future[list[SmallRead]]] = deque()
    try:
        for batch in itertools.islice(batches, window):
            ahead.append(pool.submit(read_batch, batch))
        while ahead:
            done = ahead.popleft().result()
            for batch in itertools.islice(batches, 1):
                ahead.append(pool.submit(read_batch, batch))
            yield from done
    finally:
        for future in ahead:
            future.cancel()


def _batches(
    entries: Sequence[Entry], files: int = 128, size: int = MAX_CHUNK
) -> Iterator[Sequence[Entry]]:
    """Runs of at most ``files`` files and about ``size`` bytes (as listed): what is read
    ahead stays a few MiB."""
    start, total = 0, 0
    for end, entry in enumerate(entries, 1):
        total += entry.size
        if end - start >= files or total >= size:
            yield entries[start:end]
            start, total = end, 0
    if start < len(entries):
        yield entries[start:]


def read_small(path: str) -> bytes | None:
    """A file of at most BUNDLED_UP_TO bytes, whole; None if it has grown past that
    since it was listed. Never through a symlink: it was listed as a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        parts = []
        total = 0
        while part := os.read(fd, BUNDLED_UP_TO + 1 - total):
            parts.append(part)
            total += len(part)
            if total > BUNDLED_UP_TO:
                return None
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        os.close(fd)


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
    """All entries, or the one named ``only`` (a file or symlink) or that directory's subtree."""
    if only is None:
        return list(entries)
    wanted = str(PurePosixPath(only))
    chosen = [e for e in entries if e.path == wanted or e.path.startswith(wanted + "/")]
    if not chosen:
        raise InputError(f"the tree holds no {only!r}", "list it with `metanode storage ls ID`")
    return chosen


def create_parents(target: str, rel: str, made: set[str]) -> str:
    """The path of ``rel`` below ``target``, its parent directories created as needed;
    refuses a parent that is a symlink (the tree must not write through one of its own
    links). ``made`` remembers the parents already checked in this restore: the tree
    cannot turn one into a symlink later (a symlink or file is never created over an
    existing path). Strings, not pathlib: a restore of many small files pays per call."""
    parent = rel.rpartition("/")[0]
    if parent and parent not in made:
        current = target
        for part in parent.split("/"):
            current = os.path.join(current, part)
            if os.path.islink(current):
                raise IntegrityError(f"the tree would write below the symlink {current}")
            make_dir(current)
        while parent and parent not in made:
            made.add(parent)
            parent = parent.rpartition("/")[0]
    return os.path.join(target, rel)


def make_dir(path: str) -> None:
    """A directory (private until its mode is set at the end), or the one already there."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def open_new_file(path: str) -> int:
    """A new regular file (never an existing one, never through a symlink)."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise InputError(f"{path} exists already", "restore into an empty directory") from None


def write_new_file(path: str, entry: Entry, data: bytes) -> None:
    """A new file holding ``data``, with the entry's mode and modification time."""
    fd = open_new_file(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        set_mode_and_time(fd, entry)
    finally:
        os.close(fd)


def set_mode_and_time(fd: int, entry: Entry) -> None:
    """On the open file: no second lookup of its path."""
    os.fchmod(fd, entry.mode)
    os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))


def finish_dir(path: str, entry: Entry) -> None:
    """Mode and modification time, as stored (after everything inside is written)."""
    os.chmod(path, entry.mode, follow_symlinks=False)
    os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)


def files_of(entries: Sequence[Entry]) -> Iterator[Entry]:
    return (e for e in entries if e.type == FILE)
