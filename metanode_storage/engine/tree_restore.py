"""Restoring a tree block below a directory, every file checked against the manifest.

Restoring writes only below the target directory: a path with "..", an
absolute path or an entry below a symlink is refused, files are opened with
O_NOFOLLOW and never over an existing path, and a symlink is created as it was
stored (never followed). Paths are strings, not pathlib: a restore of many small
files pays per call.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from functools import partial
from hashlib import sha256
from typing import BinaryIO

from metanode_storage.blockmap.records import BlockRecord, ChunkRecord
from metanode_storage.engine.model import Progress
from metanode_storage.engine.pack_groups import PackGroup
from metanode_storage.engine.reader import ChunkReader, ReplicaCheck
from metanode_storage.engine.tree import DIR, SYMLINK, Entry, safe_path
from metanode_storage.errors import InputError, IntegrityError
from metanode_storage.fileio import write_out

_JOBS_IN_FLIGHT = 2  # pack groups or large files restored at once: more only contend on 2 cores


class TreeRestore:
    """Writes a tree block's entries below a directory.

    ``chunk_data``: the verified plaintexts of a block's chunks, in order;
    ``chunk_records``: their map records; ``record_checks``: hears what each read
    found of each replica (faults are recorded and repaired by the node)."""

    def __init__(
        self,
        reader: ChunkReader,
        pool: Executor,
        *,
        chunk_data: Callable[[BlockRecord, Sequence[bytes]], Iterator[bytes]],
        chunk_records: Callable[[BlockRecord, Sequence[bytes]], list[ChunkRecord]],
        record_checks: Callable[[bytes, list[ReplicaCheck]], None],
    ) -> None:
        self._reader = reader
        self._pool = pool
        self._chunk_data = chunk_data
        self._chunk_records = chunk_records
        self._record_checks = record_checks

    def restore(
        self, block: BlockRecord, entries: Sequence[Entry], root: str, progress: Progress
    ) -> None:
        """``root`` (created if missing), its directories and symlinks, then the files,
        then the directories' modes and times (last: writing inside a directory changes
        its modification time). A path that is in the way, or the disk refusing a write,
        is an ``InputError`` naming the path; nothing already there is replaced, and
        one found in the way before the restore begins fails it before it writes."""
        try:
            os.makedirs(root, exist_ok=True)
            with os.scandir(root) as listing:
                if next(listing, None) is not None:  # a new or empty root: nothing to meet
                    refuse_what_is_in_the_way(entries, root)
            self._restore(block, entries, root, progress)
        except FileExistsError as exc:  # os.symlink names the link second
            raise InputError(
                f"{exc.filename2 or exc.filename} exists already and is in the way",
                "restore into a new or empty directory",
            ) from None
        except OSError as exc:
            where = exc.filename2 or exc.filename or root
            raise InputError(f"cannot write {where}: {exc.strerror or exc}") from None

    def _restore(
        self, block: BlockRecord, entries: Sequence[Entry], root: str, progress: Progress
    ) -> None:
        files: list[tuple[Entry, str]] = []
        made: set[str] = set()
        created: set[str] = set()  # only these get the stored modes and times: a
        # directory that was there already is the user's, and stays as it is
        for entry in entries:
            path = create_parents(root, safe_path(entry.path), made)
            if entry.type == DIR:
                if make_dir(path):
                    created.add(entry.path)
            elif entry.type == SYMLINK:
                os.symlink(entry.target, path)
            else:
                files.append((entry, path))
        self._restore_files(block, files, progress)  # each file's mode and time set
        for entry in reversed(entries):
            if entry.path in created:
                finish_dir(os.path.join(root, entry.path), entry)

    def copy_file(
        self, block: BlockRecord, entry: Entry, sink: BinaryIO, progress: Progress
    ) -> None:
        """A tree's file, chunk by chunk, into ``sink``; its SHA-256 checked at the end."""
        chunk_ids = block.chunk_ids[entry.first_chunk : entry.first_chunk + entry.chunks]
        whole = sha256()
        skip, left = entry.offset, entry.size  # a bundled file: its bytes within the chunk
        for data in self._chunk_data(block, chunk_ids):
            part = data[skip : skip + left]
            skip = max(0, skip - len(data))
            left -= len(part)
            whole.update(part)
            write_out(sink, part)
            progress(len(part))
        if not hmac.compare_digest(whole.hexdigest(), entry.sha256):
            raise IntegrityError(f"{entry.path}: the bytes do not match the manifest")

    def _restore_files(
        self, block: BlockRecord, files: Sequence[tuple[Entry, str]], progress: Progress
    ) -> None:
        """Files of one chunk (most of a typical tree: small files share bundles) are
        restored pack by pack: each pack's bytes are fetched in a few range requests, not
        one per file. Larger files go one by one. Either kind of job runs a few at a
        time: creating files and reading chunks each wait on the disk or a provider."""
        by_chunk: dict[bytes, list[tuple[Entry, str]]] = {}
        jobs: list[Callable[[], int]] = []
        for entry, path in files:
            if entry.chunks == 1:
                by_chunk.setdefault(block.chunk_ids[entry.first_chunk], []).append((entry, path))
            else:
                jobs.append(partial(self._restore_file, block, entry, path))
        records = self._chunk_records(block, list(by_chunk))
        for group in self._reader.pack_groups(records):
            jobs.append(partial(self._restore_group, group, by_chunk))
        in_flight: deque[Future[int]] = deque()

        def settle_one() -> None:
            progress(in_flight.popleft().result())  # from this thread only

        try:
            for job in jobs:
                in_flight.append(self._pool.submit(job))
                if len(in_flight) >= _JOBS_IN_FLIGHT:
                    settle_one()
            while in_flight:
                settle_one()
        finally:
            for future in in_flight:
                future.cancel()
            for future in in_flight:
                if not future.cancelled():
                    future.exception()  # no restore may go on writing after we return

    def _restore_group(
        self, group: PackGroup, files: Mapping[bytes, list[tuple[Entry, str]]]
    ) -> int:
        """The one-chunk files whose chunks lie in ``group``; each checked against the
        manifest before a byte of it is written. Bytes restored."""
        restored = 0
        # each file's part is held to the manifest's SHA-256 below
        for record, data, checks in self._reader.read_group(group, caller_hashes=True):
            self._record_checks(record.chunk_id, checks)
            for entry, path in files[record.chunk_id]:
                part = data[entry.offset : entry.offset + entry.size]  # a bundle holds many
                if not hmac.compare_digest(sha256(part).hexdigest(), entry.sha256):
                    raise IntegrityError(f"{entry.path}: the bytes do not match the manifest")
                write_new_file(path, entry, part)
                restored += len(part)
        return restored

    def _restore_file(self, block: BlockRecord, entry: Entry, path: str) -> int:
        fd = open_new_file(path)
        with _whole_or_removed(path), os.fdopen(fd, "wb") as out:
            self.copy_file(block, entry, out, lambda _: None)
            out.flush()
            set_mode_and_time(out.fileno(), entry)
        return entry.size


def refuse_what_is_in_the_way(entries: Sequence[Entry], root: str) -> None:
    """Raise the ``FileExistsError`` the restore would meet partway, before it writes:
    any existing path but a directory where the tree has one."""
    for entry in entries:
        path = os.path.join(root, safe_path(entry.path))
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except NotADirectoryError:  # a parent is a file: the tree has a directory there
            mode = 0
        if not (entry.type == DIR and stat.S_ISDIR(mode)):
            raise FileExistsError(errno.EEXIST, "in the way", path)


def create_parents(target: str, rel: str, made: set[str]) -> str:
    """The path of ``rel`` below ``target``, its parent directories created as needed;
    refuses a parent that is a symlink (the tree must not write through one of its own
    links). ``made`` remembers the parents already checked in this restore: the tree
    cannot turn one into a symlink later (a symlink or file is never created over an
    existing path), and each is checked once, not once per path below it (a tree
    1,200 levels deep took a minute). Strings, not pathlib: a restore of many small
    files pays per call."""
    unchecked = []  # the parents not yet checked, nearest first
    parent = rel.rpartition("/")[0]
    while parent and parent not in made:
        unchecked.append(parent)
        parent = parent.rpartition("/")[0]
    for directory in reversed(unchecked):  # from the nearest checked one down: each once
        current = os.path.join(target, directory)
        if os.path.islink(current):
            raise IntegrityError(f"the tree would write below the symlink {current}")
        make_dir(current)
        made.add(directory)
    return os.path.join(target, rel)


def make_dir(path: str) -> bool:
    """A directory (private until its mode is set at the end), or the one already there;
    whether it was made now."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    return True


def open_new_file(path: str) -> int:
    """A new regular file (never an existing one, never through a symlink)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)


def write_new_file(path: str, entry: Entry, data: bytes) -> None:
    """A new file holding ``data``, with the entry's mode and modification time."""
    fd = open_new_file(path)
    with _whole_or_removed(path):
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            set_mode_and_time(fd, entry)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _whole_or_removed(path: str) -> Iterator[None]:
    """Around the writing of a file this restore made (O_EXCL): one it could not
    finish, bytes that failed verification or a part cut short by a full disk, never
    stays as if restored. A write error names the file (``os.write`` names none)."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if isinstance(exc, OSError) and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def set_mode_and_time(fd: int, entry: Entry) -> None:
    """On the open file: no second lookup of its path."""
    os.fchmod(fd, entry.mode)
    os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))


def finish_dir(path: str, entry: Entry) -> None:
    """Mode and modification time, as stored (after everything inside is written)."""
    os.chmod(path, entry.mode, follow_symlinks=False)
    os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
