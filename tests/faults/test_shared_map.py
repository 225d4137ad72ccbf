"""Many hosts, one node: the block map, trail and leases in a real PostgreSQL server on
127.0.0.1, the data on an S3 server (moto), each host a home of its own and each run
a process of its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import closing
from hashlib import sha256
from pathlib import Path

import psycopg
import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.blockmap.leases import EXCLUSIVE, LeaseTable
from metanode_storage.database import DatabaseUrl
from metanode_storage.engine.setup import join_node
from metanode_storage.errors import (
    AlreadyInitialised,
    ExitCode,
    InvalidSetting,
    WrongPassphrase,
)
from tests.conftest import PASSPHRASE, cheap_kdf, cloud_provider, run_cli
from tests.pgserver import PostgresServer
from tests.servers import ROOT, S3_ACCESS_KEY, S3_SECRET_KEY, ServerProcess

SECRET = Secret(PASSPHRASE.encode())


def _shared_node(tmp_path: Path, url: str, s3: ServerProcess, hosts: int) -> list[Path]:
    """A node on three S3 buckets with its map at ``url``; the first home made by init,
    the others by join."""
    providers, credentials = [], {}
    for i in range(3):
        provider, credentials[f"s3-{i}"] = cloud_provider(
            "s3", s3.endpoint, f"s3-{i}", f"mn-{uuid.uuid4().hex[:12]}"
        )
        providers.append(provider)
    homes = [tmp_path / f"host{i}" for i in range(hosts)]
    init_node(
        homes[0], SECRET, providers=providers, credentials=credentials, kdf=cheap_kdf(),
        map_url=url,
    )  # fmt: skip
    with Node.open(homes[0], SECRET) as node:
        for store in node.providers.values():
            store.create_bucket()
    for home in homes[1:]:
        join_node(home, url, SECRET)
    return homes


def _host(home: Path, count: int, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.shared_host", str(home), str(count), str(seed)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "METANODE_PASSPHRASE": PASSPHRASE},
    )


def _cli(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "metanode_storage", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "METANODE_PASSPHRASE": PASSPHRASE, "METANODE_HOME": str(home)},
    )


def _stored(output: str) -> dict[str, str]:
    return dict(line.split() for line in output.splitlines() if line.strip())


class _LeaseWatch:
    """Reads the lease rows every few milliseconds while hosts work, and keeps every
    moment at which a lock was held exclusively by one holder and by another at once."""

    def __init__(self, url: DatabaseUrl) -> None:
        self._table = LeaseTable(url)
        self.overlaps: list[str] = []
        self.seen: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def __enter__(self) -> _LeaseWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._table.close()

    def _watch(self) -> None:
        while not self._stop.is_set():
            held = [lease for lease, state in self._table.holders() if state == "held"]
            for lease in held:
                self.seen.add((lease.name, lease.mode))
                rivals = [h for h in held if h.name == lease.name and h.token != lease.token]
                if lease.mode == EXCLUSIVE and rivals:
                    self.overlaps.append(f"{lease} with {rivals}")
            time.sleep(0.005)


@pytest.fixture(autouse=True)
def _passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METANODE_PASSPHRASE", PASSPHRASE)


@pytest.fixture
def map_url(pg_server: PostgresServer) -> DatabaseUrl:
    return DatabaseUrl(pg_server.new_database())


def test_four_hosts_store_at_once_with_gc_and_an_audit_running(
    tmp_path: Path, map_url: DatabaseUrl, s3_server: ServerProcess
) -> None:
    homes = _shared_node(tmp_path, map_url, s3_server, hosts=4)
    with _LeaseWatch(map_url) as watch:
        hosts = [_host(home, 250, seed) for seed, home in enumerate(homes, start=1)]
        time.sleep(2)  # the stores are under way
        maintenance = [
            _cli(homes[0], "storage", "gc", "--json"),
            _cli(homes[1], "storage", "distributed", "audit", "--integrity", "--json"),
        ]
        outputs = [host.communicate(timeout=600) for host in hosts]
        done = [run.communicate(timeout=600) for run in maintenance]
    for host, (_, err) in zip(hosts, outputs, strict=True):
        assert host.returncode == 0, err[-2000:]
    for run, (out, err) in zip(maintenance, done, strict=True):
        assert run.returncode == 0, (out[-1000:], err[-2000:])
    assert watch.overlaps == []
    assert ("blocks", EXCLUSIVE) in watch.seen  # gc really ran beside the stores

    stored: dict[str, str] = {}
    for out, _ in outputs:
        stored.update(_stored(out))
    assert len(stored) == 1000  # every store printed a distinct block id
    for home in homes:  # every host lists and reads every block, whichever host stored it
        with Node.open(home, SECRET) as node:
            assert {b.block_id for b in node.blocks()} == set(stored)
            ids = sorted(stored)
            for block_id, data in zip(ids, node.retrieve_many(ids), strict=True):
                assert sha256(data).hexdigest() == stored[block_id]
    with Node.open(homes[2], SECRET) as node:
        stats = node.blockmap.stats()
        # the even objects are the same 125 on every host: stored once, referenced by four
        assert stats.blocks == 1000 and stats.chunks == 125 + 4 * 125
    verified = run_cli("storage", "audit", "verify", "--json", "--home", str(homes[3]))
    assert verified.exit_code == 0, verified.stdout
    assert json.loads(verified.stdout)["events"] >= 1000  # one trail, every host's stores


def test_the_database_stopping_mid_run_loses_nothing_listed(
    tmp_path: Path, pg_server: PostgresServer, map_url: DatabaseUrl, s3_server: ServerProcess
) -> None:
    homes = _shared_node(tmp_path, map_url, s3_server, hosts=2)
    runs = [_host(home, 100_000, seed) for seed, home in enumerate(homes, start=1)]
    time.sleep(3)
    pg_server.stop(signal.SIGKILL)  # the server dies under the hosts' feet
    try:
        outputs = [run.communicate(timeout=120) for run in runs]
        failed = run_cli("storage", "ls", "--home", str(homes[0]))
    finally:
        pg_server.start()  # back (crash recovery from its WAL), for the tests after this one
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == ExitCode.DATABASE, err[-2000:]
        assert "map database" in err and "did not answer" in err
        assert "Traceback" not in err
    reported: dict[str, str] = {}
    for out, _ in outputs:
        reported.update(_stored(out))
    assert reported  # stores went through before the database stopped

    assert failed.exit_code == ExitCode.DATABASE  # down: a clear error, not a traceback
    with Node.open(homes[1], SECRET) as node:
        listed = {b.block_id for b in node.blocks()}
        assert set(reported) <= listed  # every id a store printed is listed
        for block_id in listed:  # and everything listed is whole
            data = node.retrieve_bytes(block_id)
            if block_id in reported:
                assert sha256(data).hexdigest() == reported[block_id]
        more = node.store_bytes(os.urandom(5000))  # work resumes
    with Node.open(homes[0], SECRET) as node:
        assert node.retrieve_bytes(more.block_id)
    assert run_cli("storage", "audit", "verify", "--home", str(homes[0])).exit_code == 0


def test_init_join_and_their_refusals(
    tmp_path: Path, map_url: DatabaseUrl, s3_server: ServerProcess
) -> None:
    homes = _shared_node(tmp_path, map_url, s3_server, hosts=2)
    with pytest.raises(AlreadyInitialised, match="join"):
        init_node(tmp_path / "again", SECRET, kdf=cheap_kdf(), map_url=map_url)
    with pytest.raises(WrongPassphrase):
        join_node(tmp_path / "wrong", map_url, Secret(b"not the passphrase"))
    assert not (tmp_path / "wrong" / "config.toml").exists()
    with pytest.raises(InvalidSetting, match="password"):
        join_node(tmp_path / "pw", "postgresql://u:secret@127.0.0.1/db", SECRET)
    with pytest.raises(AlreadyInitialised):
        join_node(homes[1], map_url, SECRET)

    # a change on one host reaches the other at its next run
    changed = run_cli("storage", "distributed", "redundancy", "replicas:2", "--home", str(homes[0]))
    assert changed.exit_code == 0, changed.stdout
    with Node.open(homes[0], SECRET):
        pass  # the changing host's next run gives the change to the database
    with Node.open(homes[1], SECRET) as node:
        assert node.settings.replication_factor == 2
        assert node.settings.map_url == map_url
    status = run_cli("storage", "distributed", "status", "--json", "--home", str(homes[1]))
    assert json.loads(status.stdout)["map"] == map_url
    shown = run_cli("storage", "distributed", "status", "--home", str(homes[1])).stdout
    assert f"Block Map: {map_url}" in shown
    # a key rotated on one host: the other signs with it at its next run, and every
    # host verifies the one trail
    rotated = run_cli("storage", "keys", "rotate", "--json", "--home", str(homes[0]))
    assert rotated.exit_code == 0, rotated.stderr
    new_key = json.loads(rotated.stdout)["new_key_id"]
    with Node.open(homes[1], SECRET) as node:
        assert node.keys.signer.key_id == new_key
        node.store_bytes(os.urandom(2000))
    for home in homes:
        verified = run_cli("storage", "audit", "verify", "--home", str(home))
        assert verified.exit_code == 0, verified.stdout
    # the database's copies are sealed: no provider name or bucket in clear
    with closing(psycopg.connect(map_url)) as conn:
        rows = conn.execute("SELECT name, body FROM metanode_map.shared_files").fetchall()
    for name, body in rows:
        if name != "keystore.mnk":
            assert b"s3-0" not in body and b"mn-" not in body


@pytest.mark.parametrize("into", ["sqlite", "postgresql"])
def test_a_lost_database_recovers_into_sqlite_or_a_new_postgresql(
    into: str,
    tmp_path: Path,
    pg_server: PostgresServer,
    map_url: DatabaseUrl,
    s3_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    homes = _shared_node(tmp_path, map_url, s3_server, hosts=2)
    stored: dict[str, bytes] = {}
    for home in homes:  # each host stores; each run ends with a map backup
        with Node.open(home, SECRET) as node:
            for _ in range(5):
                data = os.urandom(3000)
                stored[node.store_bytes(data).block_id] = data
    with Node.open(homes[0], SECRET) as node:
        buckets = {p.name: p.bucket for p in node.settings.providers}
    with closing(psycopg.connect(pg_server.url("postgres"), autocommit=True)) as conn:
        conn.execute(f"DROP DATABASE {map_url.rsplit('/', 1)[1]} WITH (FORCE)")
    lost = run_cli("storage", "ls", "--home", str(homes[1]))
    assert lost.exit_code != 0 and "Traceback" not in lost.stderr

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)  # the SDK's own credentials
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    new_url = DatabaseUrl(pg_server.new_database()) if into == "postgresql" else ""
    home = tmp_path / "rebuilt"
    recovered = run_cli(
        "storage", "recover", "--name", "s3-1", "--vendor", "aws",
        "--bucket", buckets["s3-1"], "--endpoint", s3_server.endpoint,
        *(["--map", new_url] if new_url else []), "--json", "--home", str(home),
    )  # fmt: skip
    assert recovered.exit_code == 0, recovered.stderr
    assert json.loads(recovered.stdout)["blocks"] == len(stored)
    with Node.open(home, SECRET) as node:
        assert node.settings.map_url == new_url
        for block_id, data in stored.items():
            assert node.retrieve_bytes(block_id) == data
    verified = run_cli("storage", "audit", "verify", "--home", str(home))
    assert verified.exit_code == 0, verified.stdout
    if new_url:
        assert not (home / "blockmap.sqlite").exists()  # the map moved into the database
        joined = tmp_path / "joined"
        join_node(joined, new_url, SECRET)  # the recovered node takes hosts again
        with Node.open(joined, SECRET) as node:
            assert {b.block_id for b in node.blocks()} == set(stored)
