"""A real provider wrapped, every call passed through: tests override the calls whose
behaviour they change (a slow region, a bucket gone read-only)."""

from __future__ import annotations

from collections.abc import Iterator

from metanode_storage.providers.base import BlobStore


class PassThrough(BlobStore):
    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner.name)
        self.inner = inner

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self.inner.get_range(key, start, end)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list_keys(self) -> Iterator[str]:
        return self.inner.list_keys()

    def check_reachable(self) -> None:
        self.inner.check_reachable()

    def create_bucket(self) -> None:
        self.inner.create_bucket()
