"""Group commit: concurrent callers share one commit, each gets its own result or the error."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from metanode_storage import Node
from metanode_storage.engine.group_commit import GroupCommit
from metanode_storage.engine.storing import new_block_ids


def test_callers_that_arrive_together_are_committed_together() -> None:
    groups: list[list[int]] = []
    gate = threading.Event()

    def commit_all(requests: Sequence[int]) -> list[int]:
        groups.append(list(requests))
        gate.wait(5)  # the first group is slow: the others queue up behind it
        return [r * 10 for r in requests]

    committer: GroupCommit[int, int] = GroupCommit(commit_all)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(committer.commit, n) for n in range(8)]
        while not groups:
            time.sleep(0.001)
        threading.Timer(0.2, gate.set).start()
        results = [f.result(timeout=10) for f in futures]
    assert results == [n * 10 for n in range(8)]
    assert sorted(n for g in groups for n in g) == list(range(8))  # each exactly once
    assert len(groups) < 8  # the ones queued behind the first were committed together


def test_a_failed_group_fails_every_caller_in_it_and_the_next_group_goes_on() -> None:
    calls = 0

    def commit_all(requests: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if "bad" in requests:
            raise RuntimeError("disk full")
        return [r.upper() for r in requests]

    committer: GroupCommit[str, str] = GroupCommit(commit_all)
    with pytest.raises(RuntimeError, match="disk full"):
        committer.commit("bad")
    assert committer.commit("good") == "GOOD"
    assert calls == 2


def test_concurrent_stores_on_one_node_share_signatures_and_stay_whole(node: Node) -> None:
    """As the service does: one node, a thread per upload. Every block is whole and
    retrievable, and stores that met at the commit share one batch signature."""
    payloads = [os.urandom(3_000 + i) for i in range(48)]
    with ThreadPoolExecutor(8) as pool:
        blocks = list(pool.map(node.store_bytes, payloads))
    for block, data in zip(blocks, payloads, strict=True):
        assert node.retrieve_bytes(block.block_id) == data
        assert node.verify(block.block_id).ok
    assert len({b.vm_signature for b in blocks}) < len(blocks)
    assert node.audit.trail.verify(node.keys.public_keys()).ok


def test_block_ids_of_a_batch_are_distinct_version_4_uuids() -> None:
    ids = new_block_ids(2000)
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    assert new_block_ids(0) == []
