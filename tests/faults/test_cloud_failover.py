"""A node on three provider families at once, against real protocol servers on 127.0.0.1:
store and retrieve, kill a server mid-run, keep reading, see it Offline, bring it back."""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metanode_storage import Node, Secret
from metanode_storage.crypto.keystore import read_keystore
from metanode_storage.engine.auditing import checkpoint_blob_key
from metanode_storage.errors import NotEnoughProviders
from tests.cloud_clients import list_objects
from tests.conftest import (
    PASSPHRASE,
    CliRunnerFn,
    cloud_node,
    named_blob_keys,
    reserved_blob_keys,
)
from tests.servers import ServerProcess

FAMILIES = ("s3", "azure", "gcs")


@pytest.fixture
def servers(
    s3_server: ServerProcess, azure_server: ServerProcess, gcs_server: ServerProcess
) -> Iterator[dict[str, ServerProcess]]:
    running = {"s3": s3_server, "azure": azure_server, "gcs": gcs_server}
    yield running
    for server in running.values():  # a test that killed one leaves it running again
        if server.process is None:
            server.start()


def _cloud_node(
    tmp_path: Path, servers: dict[str, ServerProcess], *, with_local: bool
) -> tuple[Path, dict[str, str]]:
    local = ("local",) if with_local else ()
    return cloud_node(tmp_path, servers, local, max_cloud_providers=len(FAMILIES) + len(local))


def _open(home: Path) -> Node:
    return Node.open(home, Secret(PASSPHRASE.encode()))


def test_three_families_store_and_providers_see_only_opaque_blobs(
    tmp_path: Path, servers: dict[str, ServerProcess]
) -> None:
    home, buckets = _cloud_node(tmp_path, servers, with_local=False)
    marker = b"QUARTERLY-RESULTS-DRAFT "
    with _open(home) as node:
        big = node.store_bytes(marker * 300_000, name="results.xlsx")
        small = node.store_bytes(os.urandom(3000), name="key-notes.txt")
        assert node.retrieve_bytes(big.block_id) == marker * 300_000
        assert node.verify(small.block_id).ok
        expected = named_blob_keys(node)
        assert big.chunks > 1 and len(expected) == 3 * 2  # a pack per provider per store
    keys = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    names: set[str] = set()
    for family in FAMILIES:
        held = list_objects(family, servers[family], buckets[family])
        checkpoint = checkpoint_blob_key(keys, family)
        assert any(name.endswith(checkpoint) for name in held)  # the sealed audit checkpoint
        reserved = reserved_blob_keys(keys, family)
        assert len(reserved) == 2  # the checkpoint and the map backup's head
        assert reserved <= {name.split("/")[1] for name in held}
        for name, body in held.items():
            assert re.fullmatch(r"[0-9a-f]{2}/([0-9a-f]{32}|[0-9a-f]{48})", name), name
            assert name.split("/")[1] not in names  # no name shared across providers
            names.add(name.split("/")[1])
            assert marker[:10] not in body
            for identifier in (big.block_id, small.block_id, big.data_hash, "results", "key-notes"):
                assert identifier.encode() not in body and identifier not in name
    # chunk replicas carry the 48-hex owner-tagged names; the rest (32 hex) are each
    # provider's checkpoint and its map backup log: head, snapshot part, segments
    assert {n for n in names if len(n) == 48} == expected
    assert len([n for n in names if len(n) == 32]) >= 3 * len(FAMILIES)


def test_a_killed_server_is_survived_and_reported(
    tmp_path: Path, servers: dict[str, ServerProcess]
) -> None:
    home, _ = _cloud_node(tmp_path, servers, with_local=True)
    payloads = {}
    with _open(home) as node:
        for _ in range(6):
            data = os.urandom(50_000)
            payloads[node.store_bytes(data).block_id] = data
        baseline = [_timed_read(node, block_id) for block_id in payloads]

    servers["gcs"].kill()

    with _open(home) as node:  # a fresh run: it does not yet know gcs is gone
        started = time.monotonic()
        for block_id, data in payloads.items():
            assert node.retrieve_bytes(block_id) == data
        first_pass = time.monotonic() - started
        # discovering the dead provider costs at most one bounded timeout (3 s here)
        assert first_pass < 3.0 + 2.0
        report = node.status()
        rows = {p.name: p for p in report.providers}
        assert rows["gcs"].state == "Offline" and rows["gcs"].error
        assert rows["s3"].state == rows["azure"].state == rows["local"].state == "Active"
        assert report.state == "Degraded" and report.active_providers == 3

    with _open(home) as node:  # the next run knows gcs is Offline and skips it
        known_offline = [_timed_read(node, block_id) for block_id in payloads]
        extra = statistics.median(known_offline) - statistics.median(baseline)
        assert extra < 0.100, f"a read costs {extra * 1000:.0f} ms more with gcs Offline"
        written = node.store_bytes(b"written during the outage")  # goes to the other three
        assert {loc.provider for loc in written.distribution_map} == {"s3", "azure", "local"}

    servers["gcs"].start()
    with _open(home) as node:  # known Offline: status skips it unless asked to probe
        rows = {p.name: p for p in node.status(probe_offline=True).providers}
        assert rows["gcs"].state == "Active"
        for block_id, data in payloads.items():
            assert node.retrieve_bytes(block_id) == data
            assert node.verify(block_id).ok


def test_too_few_live_providers_fails_clearly(
    tmp_path: Path, servers: dict[str, ServerProcess]
) -> None:
    home, _ = _cloud_node(tmp_path, servers, with_local=False)
    with _open(home) as node:
        kept = node.store_bytes(b"stored before the outage")
    servers["azure"].kill()
    with _open(home) as node:
        before = node.status().blocks
        with pytest.raises(NotEnoughProviders, match="2 of 3 replicas"):
            node.store_bytes(os.urandom(10_000))
        assert node.status().blocks == before
        assert node.retrieve_bytes(kept.block_id) == b"stored before the outage"


def _timed_read(node: Node, block_id: str) -> float:
    started = time.perf_counter()
    node.retrieve_bytes(block_id)
    return time.perf_counter() - started


def test_a_stopped_server_costs_the_user_no_tracebacks(
    cli: CliRunnerFn,
    tmp_path: Path,
    servers: dict[str, ServerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDKs log full tracebacks for failures we handle (gcsfs uses logger.exception):
    a user sees them only with --debug."""
    (tmp_path / "cloud").mkdir()  # tmp_path/node is the cli fixture's own node
    home, _ = _cloud_node(tmp_path / "cloud", servers, with_local=False)
    monkeypatch.setenv("METANODE_HOME", str(home))
    data = os.urandom(50_000)
    block_id = cli("storage", "put", "-", stdin=data).stdout.strip()
    servers["gcs"].kill()
    got = cli("storage", "get", block_id)
    assert got.exit_code == 0 and got.stdout_bytes == data
    assert "Traceback" not in got.stderr and len(got.stderr.splitlines()) <= 1, got.stderr
    refused = cli("storage", "put", "-", stdin=b"no room for three replicas")
    assert refused.exit_code == 6
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "not enough providers: 2 of 3 replicas" in lines[0]
    assert "provider 'store'" not in lines[0]


def test_a_hung_provider_costs_nothing_once_known_offline(
    cli: CliRunnerFn,
    tmp_path: Path,
    servers: dict[str, ServerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Four providers, one frozen (SIGSTOP: every call to it would wait out the 3 s
    timeout). Once a command has found it Offline, get, put and status make no call to
    it: the health board records no new failure and each command stays under the timeout."""
    (tmp_path / "cloud").mkdir()
    home, _ = _cloud_node(tmp_path / "cloud", servers, with_local=True)
    monkeypatch.setenv("METANODE_HOME", str(home))
    data = os.urandom(100_000)
    block_id = cli("storage", "put", "-", stdin=data).stdout.strip()
    frozen = servers["gcs"].process
    assert frozen is not None
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        found = cli("storage", "distributed", "status", "--json")  # pays one timeout
        rows = {p["name"]: p for p in json.loads(found.stdout)["providers"]}
        assert rows["gcs"]["state"] == "Offline"
        seen = json.loads((home / "health.json").read_text())["gcs"]["updated_at"]
        for args in (
            ("storage", "get", block_id),
            ("storage", "put", "-"),
            ("storage", "distributed", "status"),
        ):
            started = time.monotonic()
            result = cli(*args, stdin=b"written while gcs hangs")
            elapsed = time.monotonic() - started
            assert result.exit_code == 0, (args, result.stderr)
            assert elapsed < 3.0, (args, elapsed)  # no call waited on the frozen server
            board = json.loads((home / "health.json").read_text())["gcs"]
            assert board["updated_at"] == seen, args  # and none was even attempted
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert cli("storage", "get", block_id).stdout_bytes == data
