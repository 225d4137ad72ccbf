"""The `distributed start` service over real HTTP on 127.0.0.1, run as its own process."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.config.settings import ProviderSettings
from tests.conftest import PASSPHRASE, cheap_kdf
from tests.servers import LOOPBACK, free_port

START = [sys.executable, "-m", "metanode_storage", "storage", "distributed", "start"]


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    port: int
    token: str
    home: Path
    log: Path  # the service's stderr: a file, so a chatty access log never fills a pipe
    tls: ssl.SSLContext | None = None  # the client's, when the service serves TLS

    def connect(self) -> http.client.HTTPConnection:
        if self.tls is None:
            return http.client.HTTPConnection(LOOPBACK, self.port, timeout=60)
        return http.client.HTTPSConnection(LOOPBACK, self.port, timeout=60, context=self.tls)

    def request(
        self, method: str, path: str, body: object = None, token: str | None = "use"
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self.connect()
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'use' else token}"
        conn.request(method, path, body=body, headers=headers)  # type: ignore[arg-type]
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, dict(response.getheaders()), data


def _start(home: Path, *extra: str, tls: ssl.SSLContext | None = None) -> Service:
    port = free_port()
    env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
    log = home.parent / f"service-{port}.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [*START, "--port", str(port), *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        token = node.keys.api_token.reveal().decode()
    service = Service(process, port, token, home, log, tls)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if service.request("GET", "/health", token=None)[0] == 200:
                return service
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(log.read_text(errors="replace"))


def _stop(service: Service) -> int:
    if service.process.poll() is None:
        service.process.send_signal(signal.SIGTERM)
    service.process.communicate(timeout=60)
    return service.process.returncode


@pytest.fixture
def service(home: Path) -> Iterator[Service]:
    running = _start(home)
    yield running
    _stop(running)


def test_auth_health_and_audited_refusals(service: Service) -> None:
    assert service.request("GET", "/health", token=None)[0] == 200
    assert service.request("GET", "/v1/status", token=None)[0] == 401
    assert service.request("GET", "/v1/status", token="wrong")[0] == 401
    status, _, body = service.request("GET", "/v1/status")
    assert status == 200 and json.loads(body)["state"] == "Active"
    _stop(service)
    with Node.open(service.home, Secret(PASSPHRASE.encode())) as node:
        refusals = list(node.audit.trail.events(event_type="auth_failure"))
    # one event per source and interval, with the count (a flood cannot grow the trail)
    assert len(refusals) == 1 and refusals[0].status == "denied"
    assert refusals[0].detail["count"] == 2 and refusals[0].detail["tried"] == ["GET /v1/status"]


def test_store_head_retrieve_verify_delete_metrics(service: Service) -> None:
    payload = os.urandom(3_050_123)
    status, _, body = service.request("POST", "/v1/blocks?name=x.bin", payload)
    assert status == 201, body
    block = json.loads(body)
    assert block["size_bytes"] == len(payload)
    path = f"/v1/blocks/{block['block_id']}"
    status, headers, _ = service.request("HEAD", path)
    assert status == 200 and headers["X-Metanode-Data-Hash"] == block["data_hash"]
    status, headers, data = service.request("GET", path)
    assert status == 200 and data == payload
    status, _, body = service.request("POST", f"{path}/verify")
    assert status == 200 and json.loads(body)["ok"]
    status, _, text = service.request("GET", "/metrics")
    assert status == 200
    samples = dict(
        line.rsplit(" ", 1) for line in text.decode().splitlines() if not line.startswith("#")
    )
    assert float(samples["metanode_store_ops_total"]) == 1
    assert float(samples["metanode_retrieve_ops_total"]) == 1
    # every byte counted, exactly (a printf-style %g would say 3.05012e+06)
    assert float(samples["metanode_store_bytes_total"]) == 3_050_123
    assert float(samples["metanode_unique_bytes"]) == 3_050_123  # one block: nothing deduped
    assert float(samples["metanode_least_redundancy_margin"]) == 2  # three replicas
    assert float(samples["metanode_stored_bytes"]) == 3 * float(samples["metanode_copy_bytes"])
    assert b"# HELP metanode_store_bytes_total" in text
    assert service.request("DELETE", path)[0] == 200
    assert service.request("GET", path)[0] == 404


def test_bad_requests_get_clear_4xx(home: Path) -> None:
    service = _start(home, "--max-body-mb", "1")
    try:
        status, _, body = service.request("POST", "/v1/blocks", os.urandom(2 * 1024 * 1024))
        assert status == 413 and b"exceeds" in body
        assert service.request("GET", "/v1/blocks/not-an-id")[0] == 400
        assert service.request("GET", "/v1/blocks/" + "0" * 36)[0] == 404
        assert service.request("GET", "/no/such/route")[0] == 404
        assert service.request("PUT", "/v1/blocks")[0] == 405
        assert service.request("GET", "/health", token=None)[0] == 200  # still alive
    finally:
        assert _stop(service) == 0


def test_concurrent_clients(service: Service) -> None:
    errors: list[str] = []

    def client(seed: int) -> None:
        for _ in range(4):
            payload = os.urandom(50_000 + seed)
            status, _, body = service.request("POST", "/v1/blocks", payload)
            if status != 201:
                errors.append(body.decode())
                continue
            block_id = json.loads(body)["block_id"]
            if service.request("GET", f"/v1/blocks/{block_id}")[2] != payload:
                errors.append(f"{block_id} came back different")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    status = json.loads(service.request("GET", "/v1/status")[2])
    assert status["blocks"] == 32


def _stream(service: Service, total: int, pause_after: int, event: threading.Event) -> bytes:
    """Upload ``total`` random bytes in chunks, pausing after ``pause_after`` until ``event``."""
    conn = http.client.HTTPConnection(LOOPBACK, service.port, timeout=120)
    conn.putrequest("POST", "/v1/blocks")
    conn.putheader("Authorization", f"Bearer {service.token}")
    conn.putheader("Content-Length", str(total))
    conn.endheaders()
    sent, digest = 0, hashlib.sha256()
    while sent < total:
        piece = os.urandom(min(1 << 20, total - sent))
        conn.send(piece)
        digest.update(piece)
        sent += len(piece)
        if sent >= pause_after and not event.is_set():
            event.wait(30)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 201, body
    assert json.loads(body)["data_hash"] == digest.hexdigest()
    return body


def test_sigterm_during_a_write_finishes_it_then_exits(service: Service) -> None:
    resume = threading.Event()
    result: list[bytes] = []
    uploader = threading.Thread(
        target=lambda: result.append(_stream(service, 20 * 1024 * 1024, 8 * 1024 * 1024, resume))
    )
    uploader.start()
    time.sleep(1.0)  # the upload is half-way and paused
    service.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert service.process.poll() is None  # still finishing the write in flight
    resume.set()
    uploader.join(60)
    assert service.process.wait(60) == 0
    block_id = json.loads(result[0])["block_id"]
    with Node.open(service.home, Secret(PASSPHRASE.encode())) as node:
        assert node.verify(block_id).ok
        assert [b.block_id for b in node.blocks()] == [block_id]


def test_large_body_streams_in_bounded_memory(service: Service) -> None:
    total = 400 * 1024 * 1024
    body = _stream(service, total, total + 1, threading.Event())
    block_id = json.loads(body)["block_id"]
    conn = http.client.HTTPConnection(LOOPBACK, service.port, timeout=120)
    conn.request(
        "GET", f"/v1/blocks/{block_id}", headers={"Authorization": f"Bearer {service.token}"}
    )
    response, received = conn.getresponse(), 0
    while piece := response.read(1 << 20):
        received += len(piece)
    conn.close()
    assert received == total
    status = Path(f"/proc/{service.process.pid}/status").read_text()
    peak_kib = int(
        next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]
    )
    assert peak_kib < 300 * 1024, f"service peaked at {peak_kib // 1024} MiB"


def test_port_in_use_is_a_clear_error(service: Service) -> None:
    env = dict(os.environ, METANODE_HOME=str(service.home), METANODE_PASSPHRASE=PASSPHRASE)
    done = subprocess.run(
        [
            *START,
            "--port",
            str(service.port),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "cannot listen" in done.stderr and "Traceback" not in done.stderr


def test_a_provider_lost_while_serving_is_healed(tmp_path: Path) -> None:
    home = tmp_path / "node"
    providers = [
        ProviderSettings(f"local-{i}", "local", str(tmp_path / f"p{i}"), "local")
        for i in (1, 2, 3, 4)
    ]
    for provider in providers:
        Path(provider.path).mkdir()
    init_node(
        home,
        Secret(PASSPHRASE.encode()),
        providers=providers,
        kdf=cheap_kdf(),
    )
    service = _start(
        home, "--backup-enabled", "true", "--repair-interval", "1", "--offline-grace", "0"
    )
    try:
        payloads = {}
        for _ in range(4):
            data = os.urandom(30_000)
            payloads[json.loads(service.request("POST", "/v1/blocks", data)[2])["block_id"]] = data
        lost = tmp_path / "p1"
        shutil.move(lost, tmp_path / "p1-unplugged")
        for block_id, data in payloads.items():  # reads go on
            assert service.request("GET", f"/v1/blocks/{block_id}")[2] == data
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = json.loads(service.request("GET", "/v1/status")[2])
            rows = {p["name"]: p["state"] for p in status["providers"]}
            healed = all(
                "local-1"
                not in {loc["provider"] for loc in _describe(service, block_id)["distribution_map"]}
                for block_id in payloads
            )
            if rows["local-1"] == "Offline" and healed:
                break
            time.sleep(0.5)
        assert rows["local-1"] == "Offline" and status["state"] == "Degraded"
        assert healed, "the backup manager did not restore the replication factor"
        assert status["short_chunks"] == 0 and status["replicas"] == 3 * len(payloads)
        for block_id, data in payloads.items():
            assert service.request("GET", f"/v1/blocks/{block_id}")[2] == data
    finally:
        assert _stop(service) == 0


def _describe(service: Service, block_id: str) -> dict[str, Any]:
    """The block's ContainerBlock view, read from the map by a second process (the CLI's way)."""
    with Node.open(service.home, Secret(PASSPHRASE.encode())) as node:
        return node.describe(block_id).to_dict()


def test_a_cron_audit_runs_while_the_service_takes_writes(service: Service) -> None:
    """The CLI and the service share the node home: neither corrupts the other's state."""
    errors: list[str] = []
    stored: dict[str, bytes] = {}

    def writer() -> None:
        for _ in range(15):
            payload = os.urandom(40_000)
            status, _, body = service.request("POST", "/v1/blocks", payload)
            if status != 201:
                errors.append(body.decode())
            else:
                stored[json.loads(body)["block_id"]] = payload

    thread = threading.Thread(target=writer)
    thread.start()
    env = dict(os.environ, METANODE_HOME=str(service.home), METANODE_PASSPHRASE=PASSPHRASE)
    cli = [sys.executable, "-m", "metanode_storage", "storage"]
    audits: list[int] = []
    while thread.is_alive() or not audits:
        done = subprocess.run(
            [*cli, "distributed", "audit", "--integrity", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        audits.append(done.returncode)
    thread.join()
    assert errors == [] and set(audits) == {0}
    assert (
        subprocess.run(
            [*cli, "verify", "--all"], env=env, capture_output=True, timeout=120, check=False
        ).returncode
        == 0
    )
    trail = subprocess.run(
        [*cli, "audit", "verify", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert json.loads(trail.stdout)["ok"], trail.stdout
    for block_id, payload in stored.items():
        assert service.request("GET", f"/v1/blocks/{block_id}")[2] == payload
