"""A ``BlobStore`` on any fsspec filesystem, with a durable variant for local disks."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from metanode_storage.errors import ObjectNotFound, ProviderUnavailable
from metanode_storage.providers.base import BlobStore, check_key
from metanode_storage.providers.errors import translate


class FsspecBlobStore(BlobStore):
    """Blobs at ``root/<first two hex digits>/<key>`` on an fsspec filesystem.

    The two-digit fan-out keeps any one directory or listing page small.
    """

    def __init__(self, name: str, fs: AbstractFileSystem, root: str) -> None:
        super().__init__(name)
        self.fs = fs
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.root}/{key[:2]}/{key}"

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self.fs.pipe_file(path, data)
        except Exception as exc:
            raise translate(self.name, exc, "write") from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            data = self.fs.cat_file(path)
        except Exception as exc:
            raise self._missing_or(exc, "read") from exc
        return bytes(data)

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            return int(self.fs.info(path)["size"])
        except Exception as exc:
            raise self._missing_or(exc, "stat") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise translate(self.name, exc, "delete") from exc

    def list_keys(self) -> Iterator[str]:
        try:
            listing = self.fs.find(self.root)
        except Exception as exc:
            raise translate(self.name, exc, "list") from exc
        for path in listing:
            leaf = path.rsplit("/", 1)[-1]
            try:
                yield check_key(leaf)
            except Exception:
                continue  # not ours (a temp file, a stray upload): never report it as a blob

    def check_reachable(self) -> None:
        try:
            self.fs.ls(self.root, detail=False)
        except Exception as exc:
            raise ProviderUnavailable(self.name, f"not reachable: {type(exc).__name__}") from exc

    def _missing_or(self, exc: Exception, what: str) -> Exception:
        """A missing object is ``ObjectNotFound`` only while the provider itself is there."""
        error = translate(self.name, exc, what)
        if isinstance(error, ObjectNotFound):
            try:
                self.check_reachable()
            except ProviderUnavailable as unavailable:
                return unavailable
        return error


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
        directory = os.path.dirname(path)
        tmp = f"{directory}/.tmp-{uuid.uuid4().hex}"
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except Exception as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise translate(self.name, exc, "write") from exc

    def remove_partial_writes(self) -> None:
        """Temp files of puts killed before their rename."""
        self.check_reachable()
        for directory, _, files in os.walk(self.root):
            for leaf in files:
                if leaf.startswith(".tmp-"):
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
            raise ProviderUnavailable(self.name, f"directory {self.root} is not accessible")
