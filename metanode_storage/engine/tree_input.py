"""What a tree store reads: every file of the tree, small ones laid into bundles.

A file of at most MIN_CHUNK bytes (which the chunker would never cut) goes into
a bundle (engine/bundles.py): small files laid end to end, 256 KiB to 4 MiB,
stored as one chunk. A file then costs a read and a hash, not a sealed chunk
and a map row of its own. Equal small files within a tree are stored once.
Small files are read a few MiB ahead on worker threads: files that are not in
the page cache are then read several at once, not one after another.
"""

from __future__ import annotations

import io
import itertools
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future
from typing import BinaryIO, NamedTuple

from metanode_storage.engine.bundles import Bundle, Bundler, BundleSizes
from metanode_storage.engine.chunker import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK
from metanode_storage.engine.tree import FILE, Entry, WalkReport, files_of, manifest_bytes
from metanode_storage.errors import InputError

BUNDLED_UP_TO = MIN_CHUNK  # files this small go into bundles: the chunker would not cut them
TREE_BUNDLES = BundleSizes(MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)  # about as large as chunks


class TreeInput:
    """The streams a tree store chunks: each large file, bundles of small ones, then the
    manifest, made once every file's place is known (``heard`` of each stream's chunks,
    in order, by the store)."""

    def __init__(
        self,
        entries: Sequence[Entry],
        report: WalkReport,
        *,
        strict: bool,
        cut_key: bytes,
        pool: Executor,
    ) -> None:
        self._entries = entries
        self._report = report
        self._strict = strict
        self._bundler: Bundler[Entry] = Bundler(cut_key, TREE_BUNDLES)
        self._pool = pool
        self._written_as: list[Entry | Bundle[Entry]] = []  # what each stream was
        self._heard: list[tuple[int, int, str, int]] = []
        self.stored: list[Entry] = []  # what the manifest lists: all but the unreadable
        self.manifest = b""

    def heard(self, first_chunk: int, chunks: int, sha256: str, size: int) -> None:
        """The chunks the store made of the next stream: where they are among the
        block's chunks, and (not for a bundle) the stream's SHA-256 and size."""
        self._heard.append((first_chunk, chunks, sha256, size))

    def size(self) -> int:
        return sum(e.size for e in files_of(self.stored))

    def streams(self) -> Iterator[BinaryIO | bytes]:
        """Every file (small ones in bundles: ``bytes`` is one chunk as it is), then the
        manifest."""
        small = [e for e in self._entries if e.type == FILE and e.size <= BUNDLED_UP_TO]
        contents = read_small_files(small, self._pool)
        for entry in self._entries:
            if entry.type != FILE:
                self.stored.append(entry)
                continue
            assert entry.source is not None
            if entry.size <= BUNDLED_UP_TO:
                read = next(contents)
                if isinstance(read, OSError):
                    self._unreadable(entry, read)
                    continue
                if read.data is not None:  # else it grew: read it as a large file
                    self._check_unchanged(entry, read.status)
                    self.stored.append(entry)
                    yield from self._bundled(self._bundler.add(entry, read.data))
                    continue
            try:
                # never through a symlink: it was listed as a regular file
                fd = os.open(entry.source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                self._unreadable(entry, exc)
                continue
            with open(fd, "rb") as fh:
                self.stored.append(entry)
                self._written_as.append(entry)
                yield fh  # the store reads it to its end before it asks for the next
                self._check_unchanged(entry, os.fstat(fd))
        yield from self._bundled(self._bundler.close())
        for done, (first, chunks, sha256, size) in zip(self._written_as, self._heard, strict=True):
            if isinstance(done, Bundle):
                done.place(first)
            else:
                done.first_chunk, done.chunks, done.sha256, done.size = first, chunks, sha256, size
        self.manifest = manifest_bytes(self.stored)
        yield io.BytesIO(self.manifest)

    def _bundled(self, done: Bundle[Entry] | None) -> Iterator[bytes]:
        if done is not None:
            self._written_as.append(done)
            yield done.data

    def _unreadable(self, entry: Entry, exc: OSError) -> None:
        if self._strict:
            raise InputError(f"cannot read {entry.path}: {exc.strerror}") from None
        self._report.unreadable.append(f"{entry.path}: {exc.strerror}")

    def _check_unchanged(self, entry: Entry, read: os.stat_result) -> None:
        """A file written to while it was listed and read may be stored half old, half
        new (as tar and borg warn): report it, or under ``strict`` store nothing."""
        if (read.st_size, read.st_mtime_ns) == (entry.size, entry.mtime_ns):
            return
        if self._strict:
            raise InputError(
                f"{entry.path} changed while it was read", "store it again once it is written"
            )
        self._report.changed.append(entry.path)


class SmallFile(NamedTuple):
    data: bytes | None  # None: it has grown past BUNDLED_UP_TO since it was listed
    status: os.stat_result  # once read: what tells whether it changed meanwhile


SmallRead = SmallFile | OSError  # or why it could not be read


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


def read_small(path: str) -> SmallFile:
    """A file of at most BUNDLED_UP_TO bytes, whole (no data if it has grown past that
    since it was listed). Never through a symlink: it was listed as a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        parts = []
        total = 0
        while part := os.read(fd, BUNDLED_UP_TO + 1 - total):
            parts.append(part)
            total += len(part)
            if total > BUNDLED_UP_TO:
                return SmallFile(None, os.fstat(fd))
        return SmallFile(parts[0] if len(parts) == 1 else b"".join(parts), os.fstat(fd))
    finally:
        os.close(fd)
