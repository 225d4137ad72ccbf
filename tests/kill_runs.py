"""SIGKILL a store at random moments, and check what the node lists afterwards."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

from metanode_storage import Node


def kill_stores_at_random(
    start: Callable[[], subprocess.Popen[bytes]], source: Path, kills: int, size: int
) -> tuple[set[str], set[str]]:
    """One store of ``source`` run to the end (timed), then ``kills`` more, each of new
    content (no dedup shortcut) and SIGKILLed at a random moment within that time.
    Returns the block ids printed and the SHA-256 of every content attempted."""
    source.write_bytes(os.urandom(size))
    attempted = {sha256(source.read_bytes()).hexdigest()}
    started = time.monotonic()
    first = start()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    full_run = time.monotonic() - started
    reported = {out.decode().strip()}
    rng = random.Random(os.urandom(8))
    for _ in range(kills):
        data = os.urandom(size)
        source.write_bytes(data)
        attempted.add(sha256(data).hexdigest())
        victim = start()
        time.sleep(rng.uniform(0.0, full_run))
        victim.send_signal(signal.SIGKILL)
        out, _ = victim.communicate(timeout=60)
        if victim.returncode == 0:
            reported.add(out.decode().strip())  # it finished before the kill
    return reported, attempted


def assert_only_whole_blocks(node: Node, reported: set[str], attempted: set[str]) -> None:
    """Every id a store printed is listed. A store killed between its commit and printing
    may have left a block too; whatever is listed must be whole and one of ours."""
    listed = {b.block_id: b for b in node.blocks()}
    assert reported <= set(listed)
    for block_id, block in listed.items():
        assert block.data_hash in attempted
        assert node.verify(block_id).ok
        assert sha256(node.retrieve_bytes(block_id)).hexdigest() == block.data_hash
