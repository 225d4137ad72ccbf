"""Replica uploads of one block run concurrently: a store costs about the slowest provider."""

from __future__ import annotations

import time
from pathlib import Path

from metanode_storage import Node
from tests.wrapped_store import PassThrough

DELAY = 0.4


class SlowWrites(PassThrough):
    """A real provider whose writes take DELAY seconds longer (a distant region)."""

    def put(self, key: str, data: bytes) -> None:
        time.sleep(DELAY)
        self.inner.put(key, data)


def test_store_latency_is_the_slowest_provider_not_the_sum(node: Node, home: Path) -> None:
    node.providers.update({name: SlowWrites(store) for name, store in node.providers.items()})
    started = time.monotonic()
    block = node.store_bytes(b"one chunk, three replicas")
    elapsed = time.monotonic() - started
    assert len(block.distribution_map) == 3
    assert DELAY <= elapsed < 2 * DELAY, f"{elapsed:.2f} s for three {DELAY} s uploads"
    assert node.retrieve_bytes(block.block_id) == b"one chunk, three replicas"
