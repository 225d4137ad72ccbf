"""The real entry point: output, JSON, exit codes and messages a user sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metanode_storage import Secret
from metanode_storage.crypto.keystore import read_keystore
from metanode_storage.engine.blobformat import new_blob_key
from tests.conftest import PASSPHRASE, CliRunnerFn, blob_files


def test_put_get_round_trip_through_files(cli: CliRunnerFn, tmp_path: Path) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(os.urandom(300_000))
    put = cli("storage", "put", str(source))
    assert put.exit_code == 0, put.stderr
    block_id = put.stdout.strip()
    target = tmp_path / "back.pdf"
    got = cli("storage", "get", block_id, "-o", str(target))
    assert got.exit_code == 0, got.stderr
    assert target.read_bytes() == source.read_bytes()


def test_put_from_stdin_get_to_stdout(cli: CliRunnerFn) -> None:
    payload = os.urandom(70_000)
    block_id = cli("storage", "put", "-", stdin=payload).stdout.strip()
    got = cli("storage", "get", block_id)
    assert got.exit_code == 0
    assert got.stdout_bytes == payload


def test_put_json_has_the_container_block_fields_and_no_secret(cli: CliRunnerFn) -> None:
    result = cli("storage", "put", "-", "--json", stdin=b"hello")
    document = json.loads(result.stdout)
    for field in (
        "block_id",
        "data_hash",
        "proof_hash",
        "size_bytes",
        "created_at",
        "distribution_map",
        "vm_signature",
    ):
        assert field in document
    assert document["size_bytes"] == 5
    assert len(document["distribution_map"]) == 3
    assert document["proof"]["signature"]
    assert PASSPHRASE not in result.stdout
    assert "encrypted_path" not in result.stdout  # replica names stay in the map


def test_ls_rm_and_status(cli: CliRunnerFn, home: Path) -> None:
    block_id = cli("storage", "put", "-", stdin=os.urandom(1000)).stdout.strip()
    listing = json.loads(cli("storage", "ls", "--json").stdout)
    assert [b["block_id"] for b in listing] == [block_id]
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert (status["blocks"], status["active_providers"], status["replicas"]) == (1, 3, 3)
    assert status["data_integrity_percent"] == 100.0
    assert status["average_latency_ms"] > 0
    text = cli("storage", "distributed", "status").stdout
    assert "Distributed Storage Status: Active" in text
    assert "Active Providers: 3/3" in text and "Total Blocks: 1" in text
    removed = cli("storage", "rm", block_id)
    assert removed.exit_code == 0
    assert blob_files(home) == []
    assert json.loads(cli("storage", "ls", "--json").stdout) == []


def test_rm_takes_several_blocks_and_checks_every_id_first(cli: CliRunnerFn, home: Path) -> None:
    payloads = [os.urandom(3000 + i) for i in range(3)]
    ids = [cli("storage", "put", "-", stdin=p).stdout.strip() for p in payloads]
    blobs_before = sorted(blob_files(home))
    missing = "00000000-0000-4000-8000-000000000000"
    refused = cli("storage", "rm", ids[0], missing, ids[1])
    assert refused.exit_code == 5 and "no block" in refused.stderr
    assert sorted(blob_files(home)) == blobs_before  # nothing deleted, not even ids[0]
    for block_id, payload in zip(ids, payloads, strict=True):
        assert cli("storage", "get", block_id).stdout_bytes == payload

    # a prefix and the whole id of one block name it once
    removed = cli("storage", "rm", ids[0][:8], ids[0], ids[1], "--json")
    assert removed.exit_code == 0, removed.stderr
    document = json.loads(removed.stdout)
    assert [b["block_id"] for b in document["blocks"]] == ids[:2]
    assert document["blobs_deleted"] == sum(b["blobs_deleted"] for b in document["blocks"])
    assert "block_id" not in document  # the one-block keys only when one block went
    assert [b["block_id"] for b in json.loads(cli("storage", "ls", "--json").stdout)] == [ids[2]]
    assert cli("storage", "get", ids[2]).stdout_bytes == payloads[2]
    events = json.loads(cli("storage", "audit", "list", "--type", "delete", "--json").stdout)
    assert sorted(e["block_id"] for e in events) == sorted(ids[:2])

    one = json.loads(cli("storage", "rm", ids[2], "--json").stdout)
    assert one["block_id"] == ids[2] and one["blocks"] == [
        {"block_id": ids[2], "blobs_deleted": one["blobs_deleted"]}
    ]
    assert blob_files(home) == []


def test_rm_that_fails_partway_names_the_blocks_already_deleted(
    cli: CliRunnerFn, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error names the block that failed; the blocks deleted before it are named in a
    warning (and audited), so a script or an operator knows what is gone."""
    from metanode_storage.engine.removal import remove_block
    from metanode_storage.errors import LeaseLost

    ids = [cli("storage", "put", "-", stdin=os.urandom(3000 + i)).stdout.strip() for i in range(3)]
    calls: list[str] = []

    def lose_the_lease_on_the_second(*args: object) -> int:
        calls.append(str(args[-1]))
        if len(calls) == 2:  # as if `lock break` ran now: the map refuses the write
            raise LeaseLost("this run's QLOCK lease on 'blocks' was broken")
        return remove_block(*args)  # type: ignore[arg-type]

    monkeypatch.setattr("metanode_storage.engine.node.remove_block", lose_the_lease_on_the_second)
    failed = cli("storage", "rm", *ids)
    assert failed.exit_code != 0 and "lease" in failed.stderr
    assert f"deleted before the failure: {ids[0]}" in failed.stderr
    assert [b["block_id"] for b in json.loads(cli("storage", "ls", "--json").stdout)] == ids[1:]
    events = json.loads(cli("storage", "audit", "list", "--type", "delete", "--json").stdout)
    assert [e["block_id"] for e in events] == [ids[0]]


def test_verify_exit_codes_follow_replica_health(cli: CliRunnerFn, home: Path) -> None:
    block_id = cli("storage", "put", "-", stdin=os.urandom(5000)).stdout.strip()
    assert cli("storage", "verify", block_id).exit_code == 0
    victim = blob_files(home)[0]
    victim.write_bytes(b"\0" + victim.read_bytes()[1:])
    result = cli("storage", "verify", "--all", "--json")
    assert result.exit_code == 10
    report = json.loads(result.stdout)
    assert report["blocks_with_problems"] == 1
    assert report["blocks"][0]["faults"][0]["state"] == "corrupt"
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["faulty_replicas"] == 1
    assert cli("storage", "get", block_id).exit_code == 0  # two good copies remain


def test_gc_removes_its_own_orphans_only(cli: CliRunnerFn, home: Path) -> None:
    block_id = cli("storage", "put", "-", stdin=os.urandom(5000)).stdout.strip()
    keys = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    own = new_blob_key(keys.owner_key)
    orphan = home / "providers" / "local-2" / own[:2] / own
    foreign = home / "providers" / "local-2" / "ab" / ("ab" + "0" * 30)
    for path in (orphan, foreign):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left by a killed store")
    dry = json.loads(cli("storage", "gc", "--dry-run", "--json").stdout)
    assert dry["orphans"] == {"local-1": 0, "local-2": 1, "local-3": 0}
    assert orphan.exists()
    assert cli("storage", "gc").exit_code == 0
    assert not orphan.exists()
    assert foreign.exists()  # not provably ours: another node's, or anyone's
    assert cli("storage", "verify", block_id).exit_code == 0


@pytest.mark.parametrize(
    ("setup", "args", "code", "message"),
    [
        ("wrong_passphrase", ("storage", "ls"), 4, "wrong passphrase"),
        ("no_passphrase", ("storage", "ls"), 4, "no passphrase"),
        ("damaged_keystore", ("storage", "ls"), 4, "damaged"),
        ("missing_keystore", ("storage", "ls"), 4, "missing"),
        ("damaged_config", ("storage", "ls"), 3, "damaged"),
        ("uninitialised", ("storage", "ls"), 3, "no node"),
        ("none", ("storage", "get", "no-such-block"), 5, "no block"),
        ("none", ("storage", "put", "/no/such/file"), 7, "cannot read"),
        ("none", ("storage", "put", "/"), 7, "root"),
        ("none", ("storage", "verify"), 2, "block id or --all"),
        ("none", ("storage", "frobnicate"), 2, "No such command"),
        ("damaged_map", ("storage", "ls"), 9, "block map"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(
    cli: CliRunnerFn,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    setup: str,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    keystore, config = home / "keystore.mnk", home / "config.toml"
    if setup == "wrong_passphrase":
        monkeypatch.setenv("METANODE_PASSPHRASE", "not it at all")
    elif setup == "no_passphrase":
        monkeypatch.delenv("METANODE_PASSPHRASE")
    elif setup == "damaged_keystore":
        keystore.write_bytes(keystore.read_bytes()[:-3] + b"xyz")
    elif setup == "missing_keystore":
        keystore.unlink()
    elif setup == "damaged_config":
        config.write_text("[node\nreplication_factor = ")
    elif setup == "uninitialised":
        monkeypatch.setenv("METANODE_HOME", str(home.parent / "elsewhere"))
    elif setup == "damaged_map":
        (home / "blockmap.sqlite").write_bytes(b"not a database" * 500)
    result = cli(*args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert PASSPHRASE not in result.stderr + result.stdout


def test_debug_shows_the_traceback(cli: CliRunnerFn) -> None:
    result = cli("--debug", "storage", "get", "no-such-block")
    assert result.exit_code == 5
    assert "Traceback" in result.stderr


def test_failed_get_leaves_no_partial_output_file(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    block_id = cli("storage", "put", "-", stdin=os.urandom(5000)).stdout.strip()
    for blob in blob_files(home):
        blob.write_bytes(b"\x01" * 40)
    target = tmp_path / "out.bin"
    result = cli("storage", "get", block_id, "-o", str(target))
    assert result.exit_code == 10
    assert not target.exists()
    assert list(tmp_path.glob(".out.bin.*")) == []


def test_init_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunnerFn
) -> None:
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("METANODE_HOME", str(fresh))
    result = cli(
        "storage",
        "distributed",
        "init",
        "--replication-factor",
        "3",
        "--encryption",
        "true",
        "--compression",
        "true",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["providers"] == ["local-1", "local-2", "local-3"]
    config = (fresh / "config.toml").read_text()
    assert "replication_factor = 3" in config and PASSPHRASE not in config
    again = cli("storage", "distributed", "init")
    assert again.exit_code == 1 and "already exists" in again.stderr
    bad = cli(
        "storage", "distributed", "init", "--home", str(tmp_path / "x"), "--encryption", "maybe"
    )
    assert bad.exit_code == 2


def test_init_refuses_more_replicas_than_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunnerFn
) -> None:
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "n"))
    result = cli(
        "storage", "distributed", "init", "--providers", "local,local", "--replication-factor", "3"
    )
    assert result.exit_code == 2
    assert "cannot hold 3 replicas" in result.stderr
    assert not (tmp_path / "n" / "config.toml").exists()


def test_python_dash_m_runs_the_same_cli(home: Path) -> None:
    env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
    result = subprocess.run(
        [sys.executable, "-m", "metanode_storage", "storage", "ls", "--json"],
        capture_output=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_names_cannot_steer_the_terminal_or_break_ls(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    """A stored name is data: one holding escape sequences printed raw (recolouring or
    retitling the operator's terminal), and one like "[/x]" was read as rich markup and
    made every `ls` an internal error. Names now print with control characters escaped
    and brackets as they are; --json keeps them exact."""
    from metanode_storage import Node, Secret

    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        node.store_bytes(b"a", name="[/x]")
        node.store_bytes(b"b", name="[bold red]bold")
    tree = tmp_path / "artifacts"
    tree.mkdir()
    hostile = "evil\x1b]0;retitled\x07\x1b[31mred"
    (tree / hostile).write_bytes(b"c")
    (tree / os.fsdecode(b"latin1-\xe9t\xe9")).write_bytes(b"d")  # a name that is not UTF-8
    tree_id = cli("storage", "put", str(tree)).stdout.strip()

    listed = cli("storage", "ls")
    assert listed.exit_code == 0, listed.stderr
    assert "[/x]" in listed.stdout and "[bold" in listed.stdout  # not eaten as markup
    files = cli("storage", "ls", tree_id)
    assert files.exit_code == 0, files.stderr
    assert "\x1b" not in files.stdout and "\x07" not in files.stdout
    assert "evil\\x1b]0;retitled\\x07\\x1b[31mred" in files.stdout
    assert "latin1-\\xe9t\\xe9" in files.stdout  # a strict UTF-8 stdout refused it raw
    entries = json.loads(cli("storage", "ls", tree_id, "--json").stdout)
    assert f"artifacts/{hostile}" in [e["path"] for e in entries]
