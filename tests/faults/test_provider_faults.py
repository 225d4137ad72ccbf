"""A provider directory that vanished, or a full provider disk: clear errors, nothing lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.errors import NotEnoughProviders
from tests.conftest import PASSPHRASE, CliRunnerFn, cheap_kdf, data_blobs, provider_dirs


def test_vanished_provider_directory(cli: CliRunnerFn, home: Path) -> None:
    payload = os.urandom(50_000)
    block_id = cli("storage", "put", "-", stdin=payload).stdout.strip()
    gone = provider_dirs(home)[1]
    shutil.move(gone, gone.with_name("unmounted"))

    refused = cli("storage", "put", "-", stdin=b"more data")
    assert refused.exit_code == 6
    assert "local-2" in refused.stderr and "missing" in refused.stderr
    assert not gone.exists()  # never recreated behind the operator's back

    got = cli("storage", "get", block_id)  # the other two replicas serve the read
    assert got.exit_code == 0 and got.stdout_bytes == payload
    status = cli("storage", "distributed", "status")
    assert "Active Providers: 2/3" in status.stdout and "Degraded" in status.stdout
    assert cli("storage", "verify", block_id).exit_code == 6  # unreachable, not corrupt

    shutil.move(gone.with_name("unmounted"), gone)
    assert cli("storage", "verify", block_id).exit_code == 0
    assert len(data_blobs(home, gone)) == 1  # one chunk, one replica here: nothing half-stored
    assert not [p for p in gone.rglob(".partial-*")]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real filesystem that fills up (needs root, as CI has)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _node_with(tmp_path: Path, small_disk: Path, count: int) -> Path:
    home = tmp_path / f"node-{uuid.uuid4().hex[:6]}"
    providers = [ProviderSettings("full-1", "local", str(small_disk / "p"), "local")]
    providers += [
        ProviderSettings(f"local-{i}", "local", str(tmp_path / f"p{i}-{home.name}"), "local")
        for i in range(2, count + 1)
    ]
    init_node(home, Secret(PASSPHRASE.encode()), providers=providers, kdf=cheap_kdf())
    return home


def test_full_provider_with_no_spare_fails_cleanly(tmp_path: Path, small_disk: Path) -> None:
    home = _node_with(tmp_path, small_disk, 3)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        kept = node.store_bytes(b"small enough to fit")
        before = node.status()
        with pytest.raises(NotEnoughProviders, match="no space left"):
            node.store_bytes(os.urandom(3 * 1024 * 1024))
        after = node.status()
        assert (after.blocks, after.replicas) == (before.blocks, before.replicas)
        assert node.retrieve_bytes(kept.block_id) == b"small enough to fit"
        assert node.collect_garbage(dry_run=True) == {"full-1": 0, "local-2": 0, "local-3": 0}


def test_full_provider_is_replaced_by_a_spare(tmp_path: Path, small_disk: Path) -> None:
    home = _node_with(tmp_path, small_disk, 4)
    data = os.urandom(3 * 1024 * 1024)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        for _ in range(3):  # placement is random: make the full disk likely to be picked
            block = node.store_bytes(data)
            # every chunk got its three replicas, the full disk's share going to the spare
            assert sum(loc.chunk_replicas for loc in block.distribution_map) == 3 * block.chunks
            assert node.retrieve_bytes(block.block_id) == data
        assert node.verify(block.block_id).ok


def test_a_provider_on_a_read_only_file_system_says_so(tmp_path: Path, small_disk: Path) -> None:
    """A disk remounted read-only (as the kernel does after I/O errors) was 'not
    accessible': the operator was sent to check permissions. Now it is named."""
    home = _node_with(tmp_path, small_disk, 3)
    remounted = subprocess.run(
        ["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, check=False
    )
    assert remounted.returncode == 0, remounted.stderr
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        with pytest.raises(NotEnoughProviders, match=r"full-1.*on a read-only file system"):
            node.store_bytes(b"nowhere to go on full-1")
        assert node.status().active_providers == 2


def test_under_replication_when_allowed_is_visible(tmp_path: Path) -> None:
    home = tmp_path / "node"
    init_node(home, Secret(PASSPHRASE.encode()), allow_under_replication=True, kdf=cheap_kdf())
    gone = provider_dirs(home)[2]
    shutil.move(gone, gone.with_name("away"))
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        block = node.store_bytes(os.urandom(20_000))
        assert {loc.provider for loc in block.distribution_map} == {"local-1", "local-2"}
        report = node.status()
        assert report.short_chunks == 1 and report.replicas == 2
        assert node.retrieve_bytes(block.block_id)
