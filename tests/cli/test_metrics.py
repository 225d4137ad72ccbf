"""`distributed metrics`: measured figures only, and a failover counted when one happens."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import CliRunnerFn, blob_files


def test_metrics_say_not_measured_before_anything_happens(cli: CliRunnerFn) -> None:
    text = cli("storage", "distributed", "metrics").stdout
    assert "Storage Throughput: not measured yet" in text
    assert "Proof Generation: not measured yet" in text
    assert "Multi-Cloud Failover: 0 failovers (24h)" in text


def test_metrics_are_measured_and_count_failovers(cli: CliRunnerFn, home: Path) -> None:
    ids = [cli("storage", "put", "-", stdin=os.urandom(20_000)).stdout.strip() for _ in range(3)]
    for block_id in ids:
        cli("storage", "get", block_id)
    before = json.loads(cli("storage", "distributed", "metrics", "--json").stdout)
    assert before["counters"]["store_ops"] == 3 and before["counters"]["retrieve_ops"] == 3
    assert before["counters"]["store_bytes"] == 60_000
    assert before["storage_ops_per_second"] > 0 and before["proofs_per_second"] > 0
    assert before["failovers_24h"] == 0
    for blob in blob_files(home):  # one bad copy of every chunk on local-1
        if blob.parent.parent.name == "local-1":
            blob.write_bytes(b"\x00" * 64)
    for _ in range(6):  # replicas are tried in random order: local-1 comes first sometimes
        for block_id in ids:
            assert cli("storage", "get", block_id).exit_code == 0
    after = json.loads(cli("storage", "distributed", "metrics", "--json").stdout)
    assert after["failovers_24h"] >= 1
    assert after["counters"]["retrieve_ops"] == 3 + 18
    text = cli("storage", "distributed", "metrics").stdout
    assert "ops/sec" in text and "proofs/sec" in text
