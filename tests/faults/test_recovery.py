"""Losing the machine must not lose the data: store, wipe the node home, recover it on a
"fresh machine" from one provider and the passphrase, retrieve everything bit-exact."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.crypto.xwing import XWingIdentity
from metanode_storage.engine.recovery_pointer import pointer_name
from tests.conftest import PASSPHRASE, CliResult, CliRunnerFn, cheap_kdf, cloud_provider
from tests.servers import S3_ACCESS_KEY, S3_SECRET_KEY, ServerProcess


def _node_on_disks(
    home: Path, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node on three local directories beside its home (they outlive it), named
    PREFIX1 to PREFIX3, made the current home."""
    providers = [
        ProviderSettings(f"{prefix}{i}", "local", str(tmp_path / f"{prefix}{i}"), "local")
        for i in (1, 2, 3)
    ]
    for provider in providers:
        Path(provider.path).mkdir()
    init_node(home, Secret(PASSPHRASE.encode()), providers=providers, kdf=cheap_kdf())
    monkeypatch.setenv("METANODE_HOME", str(home))


def _store_some(cli: CliRunnerFn) -> dict[str, bytes]:
    payloads = {}
    for size in (0, 1, 5000, 2_500_000):
        data = os.urandom(size)
        result = cli("storage", "put", "-", stdin=data)
        assert result.exit_code == 0, result.stderr
        payloads[result.stdout.strip()] = data
    gone = next(iter(payloads))
    assert cli("storage", "rm", gone).exit_code == 0
    del payloads[gone]
    return payloads


def test_recover_a_lost_node_from_one_local_provider(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "lost-node"
    _node_on_disks(home, tmp_path, "disk-", monkeypatch)
    payloads = _store_some(cli)
    listing = json.loads(cli("storage", "ls", "--json").stdout)

    shutil.rmtree(home)  # the machine is lost
    fresh = tmp_path / "new-machine"
    monkeypatch.setenv("METANODE_HOME", str(fresh))
    recovered = cli(
        "storage",
        "recover",
        "--name",
        "disk-2",
        "--vendor",
        "local",
        "--path",
        str(tmp_path / "disk-2"),
    )
    assert recovered.exit_code == 0, recovered.stderr  # the passphrase comes from the env
    assert cli("storage", "gc", "--dry-run", "--json").exit_code == 0
    orphans = json.loads(cli("storage", "gc", "--dry-run", "--json").stdout)["orphans"]
    assert orphans == {"disk-1": 0, "disk-2": 0, "disk-3": 0}  # backups and checkpoints kept
    report = json.loads(cli("storage", "audit", "verify", "--json").stdout)
    assert report["ok"], report["problems"]
    assert json.loads(cli("storage", "ls", "--json").stdout) == listing
    for block_id, data in payloads.items():
        assert cli("storage", "get", block_id).stdout_bytes == data
    assert cli("storage", "verify", "--all").exit_code == 0


def test_recover_from_disks_mounted_elsewhere(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new machine mounts the surviving disks at other paths: the recovered node
    reaches the one recovery read where recovery found it (it used to stop with exit 6,
    leaving a home that a second `recover` refused), and `providers configure` moves the
    others, which are then tried at once, not waited out as Offline."""
    home = tmp_path / "lost-node"
    _node_on_disks(home, tmp_path, "disk-", monkeypatch)
    payloads = _store_some(cli)
    shutil.rmtree(home)
    moved = tmp_path / "mnt"
    moved.mkdir()
    for i in (1, 2, 3):
        (tmp_path / f"disk-{i}").rename(moved / f"disk-{i}")
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "new-machine"))
    recovered = _recover(cli, moved, "disk-2")  # --path MOVED/disk-2
    assert recovered.exit_code == 0, recovered.stderr
    assert json.loads(recovered.stdout)["audit_trail_ok"]
    for block_id, data in payloads.items():  # from disk-2 alone, where it is now
        assert cli("storage", "get", block_id).stdout_bytes == data
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["active_providers"] == 1
    for name in ("disk-1", "disk-3"):
        done = cli("storage", "providers", "configure", "--name", name, "--path", str(moved / name))
        assert done.exit_code == 0, done.stderr
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["active_providers"] == 3
    assert cli("storage", "verify", "--all").exit_code == 0


def test_recovery_refuses_the_wrong_passphrase_or_provider(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "node-b"
    _node_on_disks(home, tmp_path, "d", monkeypatch)
    cli("storage", "put", "-", stdin=b"something")
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("METANODE_PASSPHRASE", "not the passphrase at all")
    result = cli(
        "storage", "recover", "--name", "d1", "--vendor", "local", "--path", str(tmp_path / "d1")
    )
    assert result.exit_code == 6 and "no map backup" in result.stderr
    assert not (tmp_path / "elsewhere" / "config.toml").exists()
    monkeypatch.setenv("METANODE_PASSPHRASE", PASSPHRASE)
    renamed = cli(
        "storage", "recover", "--name", "d9", "--vendor", "local", "--path", str(tmp_path / "d1")
    )
    assert renamed.exit_code == 6 and "--name" in renamed.stderr


def test_recover_from_an_s3_provider_of_a_multi_cloud_node(
    cli: CliRunnerFn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: ServerProcess,
    gcs_server: ServerProcess,
) -> None:
    s3, s3_secrets = cloud_provider("s3", s3_server.endpoint, "s3", f"mn-{uuid.uuid4().hex[:10]}")
    gcs, _ = cloud_provider("gcs", gcs_server.endpoint, "gcs", f"mn-{uuid.uuid4().hex[:10]}")
    local = ProviderSettings("local", "local", str(tmp_path / "local"), "local")
    (tmp_path / "local").mkdir()
    home = tmp_path / "cloud-node"
    init_node(
        home,
        Secret(PASSPHRASE.encode()),
        providers=[s3, gcs, local],
        credentials={"s3": s3_secrets},
        kdf=cheap_kdf(),
    )
    monkeypatch.setenv("METANODE_HOME", str(home))
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        for name in ("s3", "gcs"):
            node.providers[name].create_bucket()
    payloads = _store_some(cli)

    shutil.rmtree(home)
    shutil.rmtree(tmp_path / "local")  # the local disk went with the machine
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "rebuilt"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)  # the SDK's own credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    result = cli(
        "storage",
        "recover",
        "--name",
        "s3",
        "--vendor",
        "aws",
        "--bucket",
        s3.bucket,
        "--endpoint",
        s3_server.endpoint,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["blocks"] == len(payloads)
    for block_id, data in payloads.items():  # served by s3 and gcs; local is gone
        got = cli("storage", "get", block_id)
        assert got.exit_code == 0, got.stderr
        assert got.stdout_bytes == data


def _recover(cli: CliRunnerFn, tmp_path: Path, name: str, *extra: str) -> CliResult:
    return cli(
        "storage",
        "recover",
        "--name",
        name,
        "--vendor",
        "local",
        "--path",
        str(tmp_path / name),
        "--json",
        *extra,
    )


def test_a_recovery_identity_recovers_without_the_passphrase(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Escrow to an X-Wing recipient, keep working (a data key rotation, more stores), lose
    the machine and the passphrase: the identity file recovers everything, under a new
    passphrase that from then on recovers the node by itself."""
    home = tmp_path / "lost-node"
    _node_on_disks(home, tmp_path, "disk-", monkeypatch)
    identity = tmp_path / "offline" / "recovery.id"
    identity.parent.mkdir()
    made = json.loads(
        cli("storage", "keys", "recipient", "new", "-o", str(identity), "--json").stdout
    )
    before = _store_some(cli)
    escrowed = cli("storage", "keys", "escrow", "--to", made["recipient"], "--json")
    assert escrowed.exit_code == 0, escrowed.stderr
    assert json.loads(escrowed.stdout)["backups"] == {f"disk-{i}": "ok" for i in (1, 2, 3)}
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["tlsls"]["key_encapsulation"].startswith("X-Wing (ML-KEM-768 + X25519)")
    assert cli("storage", "keys", "rotate", "--data").exit_code == 0  # the copy follows
    after = _store_some(cli)
    payloads = {**before, **after}
    key_ids = [
        k["key_id"]
        for k in json.loads(cli("storage", "keys", "show", "--json").stdout)["signing_keys"]
    ]

    shutil.rmtree(home)  # the machine is lost, and the passphrase with it
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "new-machine"))
    monkeypatch.setenv("METANODE_PASSPHRASE", "an entirely new passphrase")
    without = _recover(cli, tmp_path, "disk-2")
    assert without.exit_code == 6 and "no map backup" in without.stderr  # not the old one
    recovered = _recover(cli, tmp_path, "disk-2", "--identity", str(identity))
    assert recovered.exit_code == 0, recovered.stderr
    document = json.loads(recovered.stdout)
    assert document["signing_key_ids"] == key_ids  # what the operator compares
    assert document["map_backups"] == {f"disk-{i}": "ok" for i in (1, 2, 3)}
    assert document["audit_trail_ok"], document["audit_problems"]
    for block_id, data in payloads.items():
        assert cli("storage", "get", block_id).stdout_bytes == data
    events = json.loads(cli("storage", "audit", "list", "--json").stdout)
    assert {"key_escrow", "recover_with_identity"} <= {e["type"] for e in events}

    # the new passphrase alone now recovers it, from another provider
    shutil.rmtree(tmp_path / "new-machine")
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "third-machine"))
    again = _recover(cli, tmp_path, "disk-3")
    assert again.exit_code == 0, again.stderr
    for block_id, data in payloads.items():
        assert cli("storage", "get", block_id).stdout_bytes == data


def test_a_lost_recovery_pointer_is_written_anew_by_repair(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that lost the pointer an identity finds the backup by: repair notices
    and writes the provider's backup and pointer anew, and the identity recovers from it."""
    home = tmp_path / "node-p"
    _node_on_disks(home, tmp_path, "disk-", monkeypatch)
    identity_file = tmp_path / "recovery.id"
    made = json.loads(
        cli("storage", "keys", "recipient", "new", "-o", str(identity_file), "--json").stdout
    )
    payloads = _store_some(cli)
    assert cli("storage", "keys", "escrow", "--to", made["recipient"]).exit_code == 0
    name = pointer_name(XWingIdentity.read(identity_file).recipient, "disk-1")
    pointer = tmp_path / "disk-1" / name[:2] / name
    pointer.unlink()
    repaired = cli("storage", "repair")
    assert repaired.exit_code == 0, repaired.stderr
    assert "map backup on disk-1: a recovery pointer to it is missing; written anew" in (
        repaired.stdout
    )
    assert pointer.exists()
    shutil.rmtree(home)
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "new-machine"))
    monkeypatch.setenv("METANODE_PASSPHRASE", "an entirely new passphrase")
    recovered = _recover(cli, tmp_path, "disk-1", "--identity", str(identity_file))
    assert recovered.exit_code == 0, recovered.stderr
    for block_id, data in payloads.items():
        assert cli("storage", "get", block_id).stdout_bytes == data


def test_another_identity_or_a_node_without_escrow_recovers_nothing(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "node-e"
    _node_on_disks(home, tmp_path, "d", monkeypatch)
    cli("storage", "put", "-", stdin=b"something")
    stranger = tmp_path / "stranger.id"
    assert cli("storage", "keys", "recipient", "new", "-o", str(stranger)).exit_code == 0
    target = tmp_path / "elsewhere"
    monkeypatch.setenv("METANODE_HOME", str(target))
    never = _recover(cli, tmp_path, "d1", "--identity", str(stranger))
    assert never.exit_code == 6 and "no recovery pointer" in never.stderr

    monkeypatch.setenv("METANODE_HOME", str(home))
    mine = tmp_path / "mine.id"
    recipient = json.loads(
        cli("storage", "keys", "recipient", "new", "-o", str(mine), "--json").stdout
    )["recipient"]
    assert cli("storage", "keys", "escrow", "--to", recipient).exit_code == 0
    monkeypatch.setenv("METANODE_HOME", str(target))
    wrong = _recover(cli, tmp_path, "d1", "--identity", str(stranger))
    assert wrong.exit_code == 6 and "no recovery pointer" in wrong.stderr
    assert not (target / "config.toml").exists()
    not_an_identity = _recover(cli, tmp_path, "d1", "--identity", str(tmp_path / "d1"))
    assert not_an_identity.exit_code == 7
    again = cli("storage", "keys", "recipient", "new", "-o", str(mine))
    assert again.exit_code == 7 and "exists" in again.stderr  # never replaced
    assert XWingIdentity.read(mine).recipient.text() == recipient


def test_a_removed_recipient_recovers_nothing_even_from_a_kept_pointer(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "node-r"
    _node_on_disks(home, tmp_path, "r", monkeypatch)
    assert cli("storage", "put", "-", stdin=b"kept").exit_code == 0
    identity = tmp_path / "leaked.id"
    made = json.loads(
        cli("storage", "keys", "recipient", "new", "-o", str(identity), "--json").stdout
    )
    assert cli("storage", "keys", "escrow", "--to", made["recipient"]).exit_code == 0
    name = pointer_name(XWingIdentity.read(identity).recipient, "r1")
    pointer = tmp_path / "r1" / name[:2] / name
    kept = pointer.read_bytes()  # a provider that keeps what it was asked to delete

    removed = cli("storage", "keys", "escrow", "--remove", made["fingerprint"], "--json")
    assert removed.exit_code == 0, removed.stderr
    document = json.loads(removed.stdout)
    assert document["pointers"] == {f"r{i}": "deleted" for i in (1, 2, 3)}
    assert document["backups"] == {f"r{i}": "ok" for i in (1, 2, 3)}
    assert not pointer.exists()
    assert "recovery recipient" not in cli("storage", "keys", "show").stdout
    pointer.write_bytes(kept)

    shutil.rmtree(home)
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "thief"))
    stolen = _recover(cli, tmp_path, "r1", "--identity", str(identity))
    assert stolen.exit_code == 4 and "no copy" in stolen.stderr  # the backup it names is new
    assert not (tmp_path / "thief" / "config.toml").exists()
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "owner"))
    assert _recover(cli, tmp_path, "r2").exit_code == 0  # the passphrase still recovers
