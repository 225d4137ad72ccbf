"""Replica uploads of one block run concurrently: a store costs about the slowest provider."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from metanode_storage import Node
from metanode_storage.providers.base import BlobStore

DELAY = 0.4


class SlowWrites(BlobStore):
    """A real provider whose writes take DELAY seconds longer (a distant region)."""

    def __init__(self, inner: BlobStore) -> None:
        super().__init__(inner.name)
        self.inner = inner

    def put(self, key: str, data: bytes) -> None:
        time.sleep(DELAY)
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


def test_store_latency_is_the_slowest_provider_not_the_sum(node: Node, home: Path) -> None:
    node.providers.update({name: SlowWrites(store) for name, store in node.providers.items()})
    started = time.monotonic()
    block = node.store_bytes(b"one chunk, three replicas")
    elapsed = time.monotonic() - started
    assert len(block.distribution_map) == 3
    assert DELAY <= elapsed < 2 * DELAY, f"{elapsed:.2f} s for three {DELAY} s uploads"
    assert node.retrieve_bytes(block.block_id) == b"one chunk, three replicas"
