"""Whatever goes in comes back bit-exact, at every size that matters to the chunker."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metanode_storage import Node
from metanode_storage.engine.chunker import MAX_CHUNK, MIN_CHUNK

_node_settings = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_node_settings
@given(data=st.binary(max_size=20_000))
def test_arbitrary_bytes_round_trip(node: Node, data: bytes) -> None:
    block = node.store_bytes(data)
    assert node.retrieve_bytes(block.block_id) == data
    assert block.size_bytes == len(data)


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        MIN_CHUNK - 1,
        MIN_CHUNK,
        MIN_CHUNK + 1,
        MAX_CHUNK - 1,
        MAX_CHUNK,
        MAX_CHUNK + 1,
        3 * MAX_CHUNK + 7,
    ],
)
def test_chunk_boundaries_round_trip(node: Node, size: int) -> None:
    data = os.urandom(size)
    block = node.store_bytes(data)
    assert node.retrieve_bytes(block.block_id) == data


def test_fifty_mebibytes_round_trip_and_dedup(node: Node) -> None:
    data = os.urandom(50 * 1024 * 1024)
    first = node.store_bytes(data)
    stored_after_first = node.status().stored_bytes
    second = node.store_bytes(data)
    assert node.status().stored_bytes == stored_after_first  # every chunk deduplicated
    assert node.retrieve_bytes(first.block_id) == data
    assert node.retrieve_bytes(second.block_id) == data
    node.remove(first.block_id)
    assert node.retrieve_bytes(second.block_id) == data  # shared chunks survive the other rm


def test_compressible_data_is_stored_smaller(node: Node) -> None:
    block = node.store_bytes(b"metanode " * 200_000)
    assert sum(loc.stored_bytes for loc in block.distribution_map) < block.size_bytes


def test_replicas_land_on_distinct_providers(node: Node) -> None:
    block = node.store_bytes(os.urandom(3 * MAX_CHUNK))
    providers = [loc.provider for loc in block.distribution_map]
    assert len(providers) == len(set(providers)) == 3
    assert all(loc.chunk_replicas == block.chunks for loc in block.distribution_map)


@_node_settings
@given(items=st.lists(st.binary(max_size=5_000), min_size=1, max_size=12))
def test_a_batch_stored_together_comes_back_together(node: Node, items: list[bytes]) -> None:
    """store_many and retrieve_many round trip, duplicates within the batch included, and
    every block gets its own audit event."""
    before = node.audit.trail.summary().retrieval_operations
    blocks = node.store_many((f"item-{i}", data) for i, data in enumerate(items))
    assert [b.size_bytes for b in blocks] == [len(d) for d in items]
    assert node.retrieve_many(b.block_id for b in blocks) == items
    assert node.audit.trail.summary().retrieval_operations == before + len(items)
