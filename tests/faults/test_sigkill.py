"""Kill `put` with SIGKILL at random moments: the map stays sound and nothing half-stored
shows. Ctrl-C and SIGTERM stop it cleanly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from hashlib import sha256
from pathlib import Path

import pytest

from metanode_storage import Node, Secret
from metanode_storage.blockmap.leases import LeaseTable
from metanode_storage.engine.batch_input import BATCH_BUNDLED_UP_TO
from tests.conftest import PASSPHRASE, blob_files, named_blob_keys
from tests.kill_runs import assert_only_whole_blocks, kill_stores_at_random

KILLS = 8


def _put(home: Path, source: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
    return subprocess.Popen(
        [sys.executable, "-m", "metanode_storage", "storage", "put", str(source)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as from a terminal: a runner started in the background ignores SIGINT, and
        # Python keeps an ignored SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_sigkill_during_put_never_leaves_a_partial_block(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    reported, attempted = kill_stores_at_random(
        lambda: _put(home, source), source, KILLS, 24 * 1024 * 1024
    )
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        assert_only_whole_blocks(node, reported, attempted)
        node.collect_garbage()
        # orphans of killed runs are gone: every blob left is one the map names
        assert {p.name for p in blob_files(home)} == named_blob_keys(node)
        fresh = os.urandom(100_000)
        block = node.store_bytes(fresh)
        assert node.retrieve_bytes(block.block_id) == fresh


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["SIGINT", "SIGTERM"],
)
def test_ctrl_c_and_sigterm_stop_a_put_cleanly(
    home: Path, tmp_path: Path, signum: int, code: int, said: str
) -> None:
    """`timeout`, cron and systemd stop a run with SIGTERM. A put died where it stood:
    no message, its lease left for the next run to take over, temporary pack files left
    for gc. It now stops as Ctrl-C does. The put reads a pipe, so it is mid-store when
    the signal comes, whatever the machine's speed."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    put = _put(home, pipe)
    leases = LeaseTable(home / "blockmap.sqlite")
    try:
        with pipe.open("wb") as feed:
            feed.write(os.urandom(12 * 1024 * 1024))  # packs written; the store waits for more
            deadline = time.monotonic() + 60
            while not leases.leases():  # the store holds the blocks lock: it has begun
                assert time.monotonic() < deadline and put.poll() is None
                time.sleep(0.02)
            put.send_signal(signum)
            _, err = put.communicate(timeout=60)
        assert put.returncode == code, err
        assert f"metanode: {said}" in err.decode()
        assert leases.leases() == []  # let go, not left to a takeover
    finally:
        leases.close()
        if put.poll() is None:
            put.kill()
    assert not [p for p in (home / "providers").rglob("*") if p.name.startswith(".partial")]
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        assert list(node.blocks()) == []


def test_sigkill_during_a_tree_put_leaves_whole_trees_only(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tree"
    for d in range(6):
        (source / f"dir-{d}").mkdir(parents=True)
        for f in range(5):
            (source / f"dir-{d}" / f"file-{f}").write_bytes(os.urandom(400_000))
    started = time.monotonic()
    first = _put(home, source)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    full_run = time.monotonic() - started
    rng = random.Random(os.urandom(8))
    for _ in range(4):
        (source / "dir-0" / "file-0").write_bytes(os.urandom(400_000))  # new content each time
        victim = _put(home, source)
        time.sleep(rng.uniform(0.0, full_run))
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
    restored = tmp_path / "restored"
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        trees = [b.block_id for b in node.blocks()]
        assert out.decode().strip() in trees
        for i, block_id in enumerate(trees):  # every listed tree is whole and verifies
            assert node.verify(block_id).ok
            entries = node.retrieve_tree(block_id, restored / str(i))
            assert len([e for e in entries if e.type == "file"]) == 30
        node.collect_garbage()
        assert {p.name for p in blob_files(home)} == named_blob_keys(node)  # orphans gone


_BATCH_SCRIPT = """
import os, sys
from metanode_storage import Node, Secret
tag, count = sys.argv[1], int(sys.argv[2])
with Node.open(None, Secret(os.environ["METANODE_PASSPHRASE"].encode())) as node:
    # large objects, each chunked on its own, and small ones laid into bundles
    node.store_many((f"{tag}-{i}", os.urandom(300_000 if i % 2 else 4_000)) for i in range(count))
"""


def test_sigkill_during_a_batch_store_lists_all_of_the_batch_or_none(
    home: Path, tmp_path: Path
) -> None:
    """store_many commits as one group: a kill anywhere leaves the whole batch or nothing."""
    env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
    count = 60

    def batch(tag: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", _BATCH_SCRIPT, tag, str(count)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    started = time.monotonic()
    first = batch("batch-first")
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    full_run = time.monotonic() - started
    rng = random.Random(os.urandom(8))
    for k in range(KILLS):
        victim = batch(f"batch-{k}")
        time.sleep(rng.uniform(0.0, full_run))
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)

    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        listed = list(node.blocks())
        per_batch: dict[str, int] = {}
        for block in listed:
            per_batch[block.name.rsplit("-", 1)[0]] = (
                per_batch.get(block.name.rsplit("-", 1)[0], 0) + 1
            )
        assert per_batch.pop("batch-first") == count
        assert all(n == count for n in per_batch.values()), per_batch
        assert all(node.verify(b.block_id).ok for b in listed)
        node.collect_garbage()
        assert {p.name for p in blob_files(home)} == named_blob_keys(node)


def test_sigkill_during_repack_keeps_every_live_chunk(home: Path) -> None:
    """`gc` rewrites sparse packs; killed anywhere in it, every listed block still reads
    back exactly, and the next gc leaves only blobs the map names."""
    env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
    passphrase = Secret(PASSPHRASE.encode())
    kept: dict[str, str] = {}  # block id -> SHA-256 of its data
    rng = random.Random(os.urandom(8))

    def make_sparse_packs(tag: str) -> None:
        with Node.open(home, passphrase) as node:
            # too large for bundles: each block's chunk can die on its own
            size = BATCH_BUNDLED_UP_TO + 5_000
            blocks = node.store_many((f"{tag}-{i}", os.urandom(size)) for i in range(120))
            for i, block in enumerate(blocks):
                if i % 5 == 0:  # a fifth stays live: the packs fall under repack_below
                    kept[block.block_id] = block.data_hash
                else:
                    node.remove(block.block_id)

    def gc() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "metanode_storage", "storage", "gc"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    make_sparse_packs("first")
    started = time.monotonic()
    first = gc()
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    full_run = time.monotonic() - started
    assert b"rewrote" in out  # the packs were sparse enough to be repacked
    for k in range(KILLS):
        make_sparse_packs(f"round-{k}")
        victim = gc()
        time.sleep(rng.uniform(0.3, 1.0) * full_run)  # start-up is the first third or so
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)

    with Node.open(home, passphrase) as node:
        assert {b.block_id for b in node.blocks()} == set(kept)
        for block_id, data_hash in kept.items():
            assert node.verify(block_id).ok
            assert sha256(node.retrieve_bytes(block_id)).hexdigest() == data_hash
        node.collect_garbage()
        node.repack()
        assert {p.name for p in blob_files(home)} == named_blob_keys(node)
        assert all(node.verify(block_id).ok for block_id in kept)
