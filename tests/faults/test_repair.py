"""The backup manager's repair pass restores the replication factor after corruption or an
outage, keeps the replaced copies as backup locations, and cleans them up later."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from metanode_storage import Node, Secret, init_node
from metanode_storage.engine.batch_input import BATCH_BUNDLED_UP_TO
from metanode_storage.engine.repair import repair
from metanode_storage.errors import QuotaExceeded
from tests.conftest import (
    PASSPHRASE,
    CliRunnerFn,
    blob_files,
    cheap_kdf,
    data_blobs,
    flip_a_byte,
    named_blob_keys,
    provider_dirs,
)
from tests.wrapped_store import PassThrough


def test_a_corrupt_replica_is_replaced_and_deleted(cli: CliRunnerFn, home: Path) -> None:
    payload = os.urandom(30_000)
    block_id = cli("storage", "put", "-", stdin=payload).stdout.strip()
    victim = blob_files(home)[0]
    victim.write_bytes(b"\x00" * 100)
    assert cli("storage", "verify", block_id).exit_code == 10
    planned = json.loads(cli("storage", "repair", "--dry-run", "--json").stdout)
    assert len(planned["actions"]) == 1 and victim.exists()  # dry run changes nothing
    done = cli("storage", "repair", "--json")
    assert done.exit_code == 0, done.stdout
    report = json.loads(done.stdout)
    assert report["repaired"] == 1 and report["actions"][0]["reasons"] == {"local-1": "corrupt"}
    assert not victim.exists()  # the bad copy is gone, its replacement written
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["faulty_replicas"] == 0 and status["replicas"] == 3
    assert cli("storage", "verify", block_id).exit_code == 0
    assert cli("storage", "get", block_id).stdout_bytes == payload
    events = json.loads(cli("storage", "audit", "list", "--type", "repair", "--json").stdout)
    assert events[0]["detail"]["new_replicas"]
    metrics = json.loads(cli("storage", "distributed", "metrics", "--json").stdout)
    assert metrics["counters"]["repairs"] == 1


def test_an_offline_provider_is_replaced_then_cleaned_up(tmp_path: Path) -> None:
    home = tmp_path / "node"
    init_node(home, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    # a fourth, spare provider
    from dataclasses import replace

    from metanode_storage.config.settings import ProviderSettings, load_settings, save_settings

    settings = load_settings(home / "config.toml")
    spare = ProviderSettings("spare", "local", str(tmp_path / "spare"), "local")
    (tmp_path / "spare").mkdir()
    save_settings(home / "config.toml", replace(settings, providers=(*settings.providers, spare)))
    passphrase = Secret(PASSPHRASE.encode())
    with Node.open(home, passphrase) as node:
        block = node.store_bytes(os.urandom(40_000))
    holders = {loc.provider for loc in block.distribution_map}
    lost = provider_dirs(home)[0] if "local-1" in holders else provider_dirs(home)[1]
    shutil.move(lost, lost.with_name("unplugged"))
    with Node.open(home, passphrase) as node:
        node.status()  # the probe marks it Offline
        report = repair(node, offline_grace=0)
        assert report.repaired == 1 and report.failed == 0
        status = node.status()
        assert status.short_chunks == 0 and status.replicas == 3
        view = node.describe(block.block_id)
        assert lost.name not in {loc.provider for loc in view.distribution_map}
        assert any(loc.backup_locations for loc in view.distribution_map)
        assert node.blockmap.stats().backup_copies == 1
        assert node.verify(block.block_id).ok
    shutil.move(lost.with_name("unplugged"), lost)  # the provider comes back
    with Node.open(home, passphrase) as node:
        node.status()
        cleanup = repair(node)
        assert cleanup.backups_cleaned == 1 and not cleanup.actions
        assert node.blockmap.stats().backup_copies == 0
        assert data_blobs(home, lost) == []  # the old copy was deleted
        assert node.verify(block.block_id).ok


def test_repair_never_deletes_the_last_good_copy(cli: CliRunnerFn, home: Path) -> None:
    block_id = cli("storage", "put", "-", stdin=os.urandom(5000)).stdout.strip()
    for blob in blob_files(home):
        blob.write_bytes(b"\x00" * 100)  # every copy bad: nothing to repair from
    cli("storage", "verify", block_id)
    result = cli("storage", "repair", "--json")
    assert result.exit_code == 10
    assert "no good copy" in json.loads(result.stdout)["actions"][0]["error"]
    assert len(blob_files(home)) == 3  # nothing was deleted


def test_reads_fall_back_to_backup_locations(tmp_path: Path) -> None:
    """After repair moved a chunk off an Offline provider, its old copy is a backup location;
    when every primary replica is then lost, the read is served from that backup."""
    from dataclasses import replace

    from metanode_storage.config.settings import ProviderSettings, load_settings, save_settings

    home = tmp_path / "node"
    init_node(home, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    settings = load_settings(home / "config.toml")
    (tmp_path / "spare").mkdir()
    spare = ProviderSettings("spare", "local", str(tmp_path / "spare"), "local")
    save_settings(home / "config.toml", replace(settings, providers=(*settings.providers, spare)))
    payload = os.urandom(20_000)
    passphrase = Secret(PASSPHRASE.encode())
    with Node.open(home, passphrase) as node:
        block = node.store_bytes(payload)
    holder = sorted(loc.provider for loc in block.distribution_map)[0]
    holder_dir = next(p for p in [*provider_dirs(home), tmp_path / "spare"] if p.name == holder)
    shutil.move(holder_dir, holder_dir.with_name("away"))
    with Node.open(home, passphrase) as node:
        node.status()
        assert repair(node, offline_grace=0).repaired == 1
    shutil.move(holder_dir.with_name("away"), holder_dir)  # back, but not cleaned up yet
    with Node.open(home, passphrase) as node:
        record = node.blockmap.get_chunk(node.blockmap.get_block(block.block_id).chunk_ids[0])
        assert record is not None and [b.provider for b in record.backups] == [holder]
        for replica in record.replicas:  # every primary copy is lost
            directory = next(
                p for p in [*provider_dirs(home), tmp_path / "spare"] if p.name == replica.provider
            )
            (directory / replica.key[:2] / replica.key).unlink()
        assert node.retrieve_bytes(block.block_id) == payload  # served by the backup copy


def test_repair_finds_missing_replicas_itself(cli: CliRunnerFn, home: Path) -> None:
    """No verify, get or audit ran before: repair must look for itself."""
    payload = os.urandom(30_000)
    block_id = cli("storage", "put", "-", stdin=payload).stdout.strip()
    blob_files(home)[0].unlink()
    result = cli("storage", "repair", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["found_missing"] == 1 and report["repaired"] == 1
    assert len(blob_files(home)) == 3
    assert cli("storage", "verify", block_id).exit_code == 0


def test_repair_with_every_copy_gone_fails_loudly(cli: CliRunnerFn, home: Path) -> None:
    cli("storage", "put", "-", stdin=os.urandom(30_000))
    for blob in blob_files(home):
        blob.unlink()
    result = cli("storage", "repair")
    assert result.exit_code == 10, result.stdout
    assert "no good copy" in result.stdout and "0 chunk(s), 1 failed" in result.stdout


def test_repair_verify_reads_every_replica(cli: CliRunnerFn, home: Path) -> None:
    payload = os.urandom(30_000)
    block_id = cli("storage", "put", "-", stdin=payload).stdout.strip()
    victim = blob_files(home)[1]
    victim.write_bytes(b"\x01" + os.urandom(200))
    quick = json.loads(cli("storage", "repair", "--json").stdout)
    assert quick["repaired"] == 0  # the blob exists: only reading it shows the damage
    full = cli("storage", "repair", "--verify", "--json")
    assert full.exit_code == 0, full.stdout + full.stderr
    report = json.loads(full.stdout)
    assert report["found_bad"] == 1 and report["repaired"] == 1
    assert cli("storage", "verify", block_id).exit_code == 0
    for blob in blob_files(home):  # now every copy is corrupt
        blob.write_bytes(b"\x01" + os.urandom(200))
    assert cli("storage", "repair", "--verify").exit_code == 10
    assert cli("storage", "get", block_id).exit_code == 10


def test_repairing_one_chunk_of_a_pack_keeps_the_other_chunks_copies(
    node: Node, home: Path
) -> None:
    """A corrupt copy inside a pack is replaced; the pack, which still holds the copies of
    other chunks, stays until nothing in it is live; the new copy goes into a pack."""
    objects = [(f"f{i}", os.urandom(BATCH_BUNDLED_UP_TO + 1)) for i in range(5)]  # not bundled
    blocks = node.store_many(objects)
    record = node.blockmap.get_chunk(node.blockmap.get_block(blocks[0].block_id).chunk_ids[0])
    assert record is not None
    victim = record.replicas[0]
    path = flip_a_byte(home, victim)
    assert node.verify(blocks[0].block_id).faults

    report = repair(node)
    assert report.repaired == 1 and report.failed == 0
    assert path.exists()  # four other chunks still live in it
    for block, (_, data) in zip(blocks, objects, strict=True):
        result = node.verify(block.block_id)  # every copy of every chunk, on every provider
        assert result.ok and not result.faults, result
        assert node.retrieve_bytes(block.block_id) == data
    repaired = node.blockmap.get_chunk(record.chunk_id)
    assert repaired is not None and all(r.in_pack for r in repaired.replicas)
    assert victim not in repaired.replicas
    node.collect_garbage()
    assert {p.name for p in blob_files(home)} == named_blob_keys(node)


class FullDisk(PassThrough):
    """A real provider whose disk is full: every write refused as the local provider
    refuses one on ENOSPC."""

    def put(self, key: str, data: bytes) -> None:
        raise QuotaExceeded(self.name, "write: no space left", "free space or add a provider")


def test_a_repair_that_cannot_write_says_why(node: Node, home: Path) -> None:
    """A missing replica whose only possible new home had a full disk was reported as
    'no healthy provider could take a new replica': the operator was not told to free
    space on that provider."""
    block = node.store_bytes(os.urandom(30_000))
    record = node.blockmap.get_chunk(node.blockmap.get_block(block.block_id).chunk_ids[0])
    assert record is not None
    lost = record.replicas[0]
    next(p for p in blob_files(home) if p.name == lost.key).unlink()
    node.providers[lost.provider] = FullDisk(node.providers[lost.provider])
    report = repair(node)
    assert report.repaired == 0 and report.failed == 1
    (action,) = report.actions
    assert action.error == (
        f"no new replica could be written ({lost.provider}: provider '{lost.provider}': "
        "write: no space left (free space or add a provider))"
    )


def test_replicas_on_a_provider_taken_out_of_the_config_move(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    """There is no command to drop a provider, so an operator edits config.toml (after
    adding a spare). The map still named replicas there: status counted them healthy,
    every chunk had one copy fewer than it said, and repair left them alone. Now verify
    and repair's survey call them lost, and repair writes them on the other providers."""
    from dataclasses import replace

    from metanode_storage.config.settings import ProviderSettings, load_settings, save_settings

    payloads = {
        cli("storage", "put", "-", stdin=data).stdout.strip(): data
        for data in (os.urandom(30_000), os.urandom(2_000_000), b"small")
    }
    settings = load_settings(home / "config.toml")
    (tmp_path / "spare").mkdir()
    spare = ProviderSettings("spare", "local", str(tmp_path / "spare"), "local")
    dropped = settings.providers[1].name
    kept = tuple(p for p in settings.providers if p.name != dropped)
    save_settings(home / "config.toml", replace(settings, providers=(*kept, spare)))

    checked = cli("storage", "verify", "--all")
    assert checked.exit_code == 10 and f"replica on {dropped} is unconfigured" in checked.stdout
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["faulty_replicas"] == status["replicas"] // 3
    repaired = cli("storage", "repair", "--json")
    assert repaired.exit_code == 0, repaired.stdout
    report = json.loads(repaired.stdout)
    assert report["unconfigured"] == [dropped] and report["failed"] == 0
    assert {a["reasons"][dropped] for a in report["actions"]} == {"unconfigured"}
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["faulty_replicas"] == 0 and status["survivable_losses"] == 2
    listing = json.loads(cli("storage", "ls", "--json").stdout)
    assert all(dropped not in block["providers"] for block in listing)
    assert cli("storage", "verify", "--all").exit_code == 0
    for block_id, data in payloads.items():
        assert cli("storage", "get", block_id).stdout_bytes == data
