"""A ``BlobStore`` on any fsspec filesystem, with a durable variant for local disks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from metanode_storage.errors import ObjectNotFound, ProviderError, ProviderUnavailable
from metanode_storage.fileio import atomic_write
from metanode_storage.providers.base import BlobStore, check_key
from metanode_storage.providers.errors import Translator, translate

# A transfer gets the provider's timeout plus one second per this many bytes,
# so a dead provider fails fast and a big chunk on a slow link still completes.
_BYTES_PER_EXTRA_SECOND = 1_000_000
_LARGEST_BLOB = 5 * 1024 * 1024
_PARTIAL = ".partial-"  # prefix of a local write not yet renamed into place


class FsspecBlobStore(BlobStore):
    """Blobs at ``root/<first two hex digits>/<key>`` on an fsspec filesystem.

    The two-digit fan-out keeps any one directory or listing page small.
    Every call on an async filesystem (s3fs, gcsfs, adlfs) runs under a
    deadline, enforced by fsspec's ``sync`` with ``asyncio.wait_for``, so no
    SDK retry policy can stall a read for minutes.
    """

    def __init__(
        self,
        name: str,
        fs: AbstractFileSystem,
        root: str,
        *,
        timeout: float = 10.0,
        translator: Translator | None = None,
    ) -> None:
        super().__init__(name)
        self.fs = fs
        self.root = root.rstrip("/")
        self.timeout = timeout
        self._translator = translator

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.root}/{key[:2]}/{key}"

    def _call(self, what: str, method: str, *args: Any, nbytes: int = 0, **kwargs: Any) -> Any:
        if getattr(self.fs, "async_impl", False):
            kwargs["timeout"] = self.timeout + nbytes / _BYTES_PER_EXTRA_SECOND
        try:
            return getattr(self.fs, method)(*args, **kwargs)
        except ProviderError:
            raise
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: Exception, what: str) -> Exception:
        """The provider error for ``exc``, or ``exc`` itself when it is not a storage failure."""
        return translate(self.name, exc, what, self._translator) or exc

    def put(self, key: str, data: bytes) -> None:
        self._call("write", "pipe_file", self._path(key), data, nbytes=len(data))

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = self._call("read", "cat_file", path, nbytes=_LARGEST_BLOB)
        except ObjectNotFound:
            self.check_reachable()  # a missing bucket is an outage, not a missing blob
            raise
        return bytes(data)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if not 0 <= start <= end:
            raise ValueError(f"bad range {start}..{end}")
        path = self._path(key)
        try:
            # by keyword: s3fs's second positional parameter is version_id
            data = self._call("read", "cat_file", path, start=start, end=end, nbytes=end - start)
        except ObjectNotFound:
            self.check_reachable()
            raise
        return bytes(data)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return int(self._call("stat", "info", path)["size"])
        except ObjectNotFound:
            self.check_reachable()
            raise

    def delete(self, key: str) -> None:
        with contextlib.suppress(ObjectNotFound):
            self._call("delete", "rm_file", self._path(key))

    def list_keys(self) -> Iterator[str]:
        try:
            listing = self._call("list", "find", self.root)
        except ObjectNotFound:
            return
        for path in listing:
            leaf = str(path).rsplit("/", 1)[-1]
            try:
                yield check_key(leaf)
            except Exception:
                continue  # not ours (a temp file, a stray upload): never report it as a blob

    def check_reachable(self) -> None:
        bucket = self.root.split("/", 1)[0]
        try:
            exists = self._call("reach", "exists", bucket)
        except ProviderError as exc:
            raise ProviderUnavailable(self.name, f"not reachable: {exc.message}") from exc
        if not exists:
            raise ProviderUnavailable(
                self.name,
                f"bucket {bucket!r} does not exist",
                "create it, or run `metanode storage providers configure ... --create-bucket`",
            )

    def create_bucket(self) -> None:
        bucket = self.root.split("/", 1)[0]
        if not self._call("reach", "exists", bucket):
            self._call("create bucket", "mkdir", bucket)


class LocalBlobStore(FsspecBlobStore):
    """Local-disk provider: writes go to a temp file, fsync, rename, fsync the directory.

    The root directory is created at init and never again: if it vanishes
    (an unmounted disk), recreating it would silently write to the wrong disk.
    """

    def __init__(self, name: str, root: str) -> None:
        super().__init__(name, LocalFileSystem(skip_instance_cache=True), root)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self.check_reachable()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            # the key in the temp name lets `gc` tell this node's leftovers from another's
            atomic_write(Path(path), data, temp_prefix=f"{_PARTIAL}{key}.", keep_cached=False)
        except Exception as exc:
            raise self._translate(exc, "write") from exc

    def remove_partial_writes(self, is_ours: Callable[[str], bool]) -> None:
        """Temp files of this node's puts killed before their rename."""
        self.check_reachable()
        for directory, _, files in os.walk(self.root):
            for leaf in files:
                if leaf.startswith(_PARTIAL) and is_ours(leaf[len(_PARTIAL) :].split(".")[0]):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(directory, leaf))

    def check_reachable(self) -> None:
        if not os.path.isdir(self.root):
            raise ProviderUnavailable(
                self.name,
                f"directory {self.root} is missing",
                "remount or restore it; metanode will not recreate it",
            )
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            try:
                read_only = bool(os.statvfs(self.root).f_flag & os.ST_RDONLY)
            except OSError:
                read_only = False
            raise ProviderUnavailable(
                self.name,
                f"directory {self.root} is "
                + ("on a read-only file system" if read_only else "not accessible"),
                "remount it read-write" if read_only else "check its owner and permissions",
            )

    def create_bucket(self) -> None:
        os.makedirs(self.root, mode=0o700, exist_ok=True)
