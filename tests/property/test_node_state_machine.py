"""A hypothesis state machine: the node behaves like a dict of block id -> bytes.

Stores of repeated content, removals and reads interleave, which exercises
dedup reference counting: removing one block must never take away a chunk
another block still needs, and removing all must leave no blob behind.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
)

from metanode_storage import Node, Secret, init_node
from tests.conftest import PASSPHRASE, blob_files, cheap_kdf, named_blob_keys
from tests.pgserver import PostgresServer

# A few fixed payloads of two or so chunks each: stores of the same payload with different
# tails share their leading chunks, so dedup happens often.
_PAYLOADS = [random.Random(i).randbytes(2560 * 1024) for i in range(3)]


class NodeMachine(RuleBasedStateMachine):
    blocks = Bundle("blocks")

    map_url = ""  # the map in the home; the PostgreSQL variant below sets one per run

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        init_node(
            self.tmp / "node",
            Secret(PASSPHRASE.encode()),
            kdf=cheap_kdf(),
            map_url=_PG[0].new_database() if self.map_url else "",
        )
        self.node = Node.open(self.tmp / "node", Secret(PASSPHRASE.encode()))
        self.model: dict[str, bytes] = {}

    @rule(target=blocks, index=st.integers(0, len(_PAYLOADS) - 1), suffix=st.binary(max_size=64))
    def store(self, index: int, suffix: bytes) -> str:
        data = _PAYLOADS[index] + suffix
        block_id = self.node.store_bytes(data).block_id
        self.model[block_id] = data
        return block_id

    @rule(target=blocks, count=st.integers(1, 4), suffix=st.binary(max_size=64))
    def store_batch(self, count: int, suffix: bytes) -> MultipleResults[str]:
        """Several objects in one group commit, sharing packs."""
        objects = [
            (f"o{i}", _PAYLOADS[i % len(_PAYLOADS)][: 300_000 * (i + 1)] + suffix)
            for i in range(count)
        ]
        stored = self.node.store_many(objects)
        for block, (_, data) in zip(stored, objects, strict=True):
            self.model[block.block_id] = data
        return multiple(*(block.block_id for block in stored))

    @rule()
    def gc_and_repack(self) -> None:
        assert set(self.node.collect_garbage().values()) <= {0}  # no orphans without faults
        self.node.repack()
        for block_id, data in self.model.items():
            assert self.node.retrieve_bytes(block_id) == data

    @rule(block_id=blocks)
    def retrieve(self, block_id: str) -> None:
        if block_id in self.model:
            assert self.node.retrieve_bytes(block_id) == self.model[block_id]

    @rule(block_id=blocks)
    def remove(self, block_id: str) -> None:
        if block_id in self.model:
            self.node.remove(block_id)
            del self.model[block_id]

    @invariant()
    def totals_match_the_model(self) -> None:
        stats = self.node.status()
        assert stats.blocks == len(self.model)
        assert stats.logical_bytes == sum(len(v) for v in self.model.values())
        # every blob is one the map names (rm deletes packs left empty), none missing
        assert {p.name for p in blob_files(self.tmp / "node")} == named_blob_keys(self.node)
        if not self.model:
            assert stats.replicas == 0
            # batch seals and ML-DSA halves go with the last block row that names them
            (parts,) = self.node.blockmap._db.execute("SELECT COUNT(*) FROM seals").fetchone()
            assert parts == 0

    def teardown(self) -> None:
        self.node.close()
        shutil.rmtree(self.tmp)


NodeMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
test_node_behaves_like_a_dict = NodeMachine.TestCase


class SharedMapNodeMachine(NodeMachine):
    """The same machine with the map, trail and leases in PostgreSQL."""

    map_url = "postgresql"


_PG: list[PostgresServer] = []


@pytest.fixture(autouse=True)
def _postgres(request: pytest.FixtureRequest) -> None:
    if "shared_map" in request.node.nodeid:
        _PG[:] = [request.getfixturevalue("pg_server")]


SharedMapNodeMachine.TestCase.settings = settings(
    max_examples=10, stateful_step_count=15, deadline=None
)
test_a_shared_map_node_behaves_like_a_dict = SharedMapNodeMachine.TestCase
