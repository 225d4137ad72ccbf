"""Two nodes sharing the same providers (two local directories and a bucket on the S3
server) must never delete each other's blobs: each node's `gc` removes only blobs whose
name carries its own ownership tag, and `repair` only touches its own replicas."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.engine.blobformat import new_blob_key
from tests.conftest import CliRunnerFn, cheap_kdf, cloud_provider
from tests.servers import ServerProcess

PASSPHRASES = {"a": "passphrase of node a", "b": "passphrase of node b"}


def _shared_providers(
    tmp_path: Path, s3_server: ServerProcess
) -> tuple[list[ProviderSettings], dict[str, dict[str, Secret]]]:
    shared = []
    for name in ("disk-1", "disk-2"):
        (tmp_path / name).mkdir()
        shared.append(ProviderSettings(name, "local", path=str(tmp_path / name)))
    bucket = f"shared-{uuid.uuid4().hex[:12]}"
    s3, secrets = cloud_provider("s3", s3_server.endpoint, "s3", bucket)
    return [*shared, s3], {"s3": secrets}


def _blob_names(tmp_path: Path) -> set[str]:
    return {p.name for d in ("disk-1", "disk-2") for p in (tmp_path / d).rglob("*") if p.is_file()}


def test_two_nodes_on_the_same_providers_keep_each_others_data(
    cli: CliRunnerFn,
    tmp_path: Path,
    s3_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    providers, credentials = _shared_providers(tmp_path, s3_server)
    homes = {n: tmp_path / f"node-{n}" for n in PASSPHRASES}
    for name, home in homes.items():  # the defaults: map backups and audit checkpoints on
        init_node(
            home,
            Secret(PASSPHRASES[name].encode()),
            providers=providers,
            credentials=credentials,
            kdf=cheap_kdf(),
        )
    with Node.open(homes["a"], Secret(PASSPHRASES["a"].encode())) as node:
        node.providers["s3"].create_bucket()

    def as_node(name: str) -> None:
        monkeypatch.setenv("METANODE_HOME", str(homes[name]))
        monkeypatch.setenv("METANODE_PASSPHRASE", PASSPHRASES[name])

    stored: dict[str, dict[str, bytes]] = {}
    for name in PASSPHRASES:
        as_node(name)
        stored[name] = {}
        for size in (10, 5000, 300_000):
            data = os.urandom(size)
            result = cli("storage", "put", "-", stdin=data)
            assert result.exit_code == 0, result.stderr
            stored[name][result.stdout.strip()] = data

    # an interrupted store of node b left an orphan on disk-1: b's gc must remove it
    with Node.open(homes["b"], Secret(PASSPHRASES["b"].encode())) as node:
        orphan = new_blob_key(node.keys.owner_key)
        node.providers["disk-1"].put(orphan, os.urandom(100))
    # and something no node made sits in the shared directory: nobody deletes it
    stranger = tmp_path / "disk-2" / "ab" / ("ab" + "0" * 30)
    stranger.parent.mkdir(exist_ok=True)
    stranger.write_bytes(b"someone else's")

    for name in PASSPHRASES:
        as_node(name)
        gc = cli("storage", "gc", "--json")
        assert gc.exit_code == 0, gc.stderr
        removed = json.loads(gc.stdout)["orphans"]
        assert sum(removed.values()) == (1 if name == "b" else 0), (name, removed)
        repair = cli("storage", "repair", "--json")
        assert repair.exit_code == 0, repair.stdout + repair.stderr
        assert json.loads(repair.stdout)["repaired"] == 0

    assert orphan not in _blob_names(tmp_path)
    assert stranger.read_bytes() == b"someone else's"
    for name in PASSPHRASES:
        as_node(name)
        verify = cli("storage", "verify", "--all")
        assert verify.exit_code == 0, verify.stdout + verify.stderr
        for block_id, data in stored[name].items():
            assert cli("storage", "get", block_id).stdout_bytes == data
        assert cli("storage", "audit", "verify").exit_code == 0
