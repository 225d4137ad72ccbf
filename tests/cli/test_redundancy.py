"""`--redundancy` through the CLI: a fresh erasure-coded node on the embedded default,
status and metrics measured from it, bad schemes refused, and `repair --rewrite` moving
a replicated node's chunks to erasure coding without losing a byte."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, CliRunnerFn, blob_files, run_cli


def _mixed(size_mib: int) -> bytes:
    """Alternating MiB of random bytes and of text: compression has half of it to work on."""
    rng = random.Random(3)
    text = b"".join(b"log line %d of the build\n" % i for i in range(45_000))[: 1 << 20]
    return b"".join(rng.randbytes(1 << 20) if i % 2 else text for i in range(size_mib))


def test_an_erasure_coded_node_on_the_embedded_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "node"
    monkeypatch.setenv("METANODE_HOME", str(home))
    monkeypatch.setenv("METANODE_PASSPHRASE", PASSPHRASE)
    made = run_cli("storage", "distributed", "init", "--redundancy", "ec:3+2", "--json")
    assert made.exit_code == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["redundancy"] == "ec:3+2" and len(created["providers"]) == 5
    payload = _mixed(8)
    block_id = run_cli("storage", "put", "-", stdin=payload).stdout.strip()
    assert run_cli("storage", "get", block_id).stdout_bytes == payload

    status = json.loads(run_cli("storage", "distributed", "status", "--json").stdout)
    assert status["redundancy"] == "ec:3+2" and status["survivable_losses"] == 2
    text = run_cli("storage", "distributed", "status").stdout
    assert "ec:3+2 (every block survives 2 more lost providers now)" in text

    storage = json.loads(run_cli("storage", "distributed", "metrics", "--json").stdout)["storage"]
    # the text MiBs repeat: whether chunks of them dedup depends on the node's keyed cut points
    assert storage["logical_bytes"] == len(payload) >= storage["unique_bytes"] > len(payload) / 2
    assert 1.6 < storage["redundancy_overhead"] < 1.75  # 5/3, plus the fragment headers
    on_disk = sum(p.stat().st_size for p in blob_files(home))
    assert storage["stored_bytes"] <= on_disk < storage["stored_bytes"] * 1.15  # pack padding
    assert storage["compression_ratio"] > 1.3  # half the data is text
    shown = run_cli("storage", "distributed", "metrics").stdout
    assert "Redundancy Overhead: 1.6" in shown and "(new chunks: ec:3+2)" in shown

    quick = run_cli("storage", "distributed", "audit", "--integrity", "--quick", "--json")
    assert quick.exit_code == 0, quick.stdout
    assert json.loads(quick.stdout)["violations"] == []


@pytest.mark.parametrize(
    ("scheme", "says"),
    [
        ("ec:3+2", "cannot hold 5 fragments"),
        ("replicas:9", "out of range"),
        ("ec:3", "not understood"),
        ("mirror", "not understood"),
    ],
)
def test_a_scheme_the_node_cannot_hold_is_refused_and_nothing_changes(
    cli: CliRunnerFn, home: Path, scheme: str, says: str
) -> None:
    before = (home / "config.toml").read_bytes()
    refused = cli("storage", "distributed", "redundancy", scheme)
    assert refused.exit_code == 2
    assert says in refused.stderr
    assert (home / "config.toml").read_bytes() == before


def test_rewrite_moves_replicated_chunks_to_erasure_coding(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    payloads = {
        cli("storage", "put", "-", stdin=d).stdout.strip(): d
        for d in (os.urandom(2_000_000), _mixed(3), b"x" * 10)
    }
    tree = tmp_path / "tree"
    files = {f"d{i % 3}/f{i}": os.urandom(3000 + i) for i in range(40)}
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    tree_id = cli("storage", "put", str(tree)).stdout.strip()
    before = json.loads(cli("storage", "distributed", "metrics", "--json").stdout)["storage"]
    assert before["redundancy_overhead"] == pytest.approx(3.0)

    changed = json.loads(cli("storage", "distributed", "redundancy", "ec:2+1", "--json").stdout)
    assert changed == {
        "redundancy": "ec:2+1",
        "pieces": 3,
        "needed": 2,
        "tolerates_lost_providers": 1,
        "changed": True,
    }
    planned = json.loads(cli("storage", "repair", "--rewrite", "--dry-run", "--json").stdout)
    assert planned["actions"] and all(
        a["reasons"] == {"": "rewrite replicas:3"} for a in planned["actions"]
    )
    done = cli("storage", "repair", "--rewrite", "--json")
    assert done.exit_code == 0, done.stdout
    assert json.loads(done.stdout)["repaired"] == len(planned["actions"])

    after = json.loads(cli("storage", "distributed", "metrics", "--json").stdout)["storage"]
    assert after["redundancy_overhead"] < 1.6  # 3/2, plus the fragment headers
    assert after["stored_bytes"] < before["stored_bytes"] * 0.6
    for block_id, data in payloads.items():
        assert cli("storage", "verify", block_id).exit_code == 0
        assert cli("storage", "get", block_id).stdout_bytes == data
    restored = tmp_path / "restored"
    assert cli("storage", "get", tree_id, "-o", str(restored)).exit_code == 0
    assert {n: (restored / "tree" / n).read_bytes() for n in files} == files
    again = json.loads(cli("storage", "repair", "--rewrite", "--json").stdout)
    assert again["actions"] == []  # nothing left to move
    cli("storage", "gc")
    on_disk = sum(p.stat().st_size for p in blob_files(home))
    assert on_disk < before["stored_bytes"] * 0.7  # the old replicas' packs are gone
    events = json.loads(cli("storage", "audit", "list", "--type", "repair", "--json").stdout)
    assert {e["detail"]["reasons"][""] for e in events} == {"rewrite replicas:3"}
