"""The service under hostile or broken clients, over real sockets on 127.0.0.1: stalled
uploads, slow headers, bytes that are not UTF-8, secrets in query strings."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from metanode_storage import Node, Secret
from tests.conftest import PASSPHRASE
from tests.servers import LOOPBACK
from tests.service.test_service import START, Service, _start, _stop


def _stalled_upload(service: Service) -> socket.socket:
    """Headers promising 1 MiB, a few bytes of body, then nothing."""
    sock = socket.create_connection((LOOPBACK, service.port), timeout=30)
    sock.sendall(
        b"POST /v1/blocks HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {service.token}\r\n".encode()
        + b"Content-Length: 1048576\r\n\r\n"
        + b"a few bytes"
    )
    return sock


def _status_line(sock: socket.socket) -> int:
    head = sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def test_stalled_uploads_neither_freeze_the_api_nor_hold_the_node(home: Path) -> None:
    service = _start(home, "--max-uploads", "4", "--body-timeout", "3")
    try:
        stalled = [_stalled_upload(service) for _ in range(4)]
        time.sleep(0.5)
        refused = [_stalled_upload(service) for _ in range(2)]
        assert [_status_line(s) for s in refused] == [503, 503]  # no slot: refused at once
        for path in ("/v1/status", "/metrics", "/health"):
            started = time.monotonic()
            status, _, _ = service.request("GET", path)
            assert status == 200 and time.monotonic() - started < 2.5, path
        # the stalled bodies are abandoned after 3 s without data: 408, lock released
        assert [_status_line(s) for s in stalled] == [408] * 4
        for sock in stalled + refused:
            sock.close()
        env = {**os.environ, "METANODE_HOME": str(home), "METANODE_PASSPHRASE": PASSPHRASE}
        gc = subprocess.run([*START[:-2], "gc"], env=env, capture_output=True, timeout=60)
        assert gc.returncode == 0, gc.stderr
        status, _, body = service.request("POST", "/v1/blocks", body=b"after the stall")
        assert status == 201, body
    finally:
        _stop(service)


def test_slow_header_clients_are_closed(home: Path) -> None:
    service = _start(home, "--header-timeout", "1")
    try:
        slow = []
        for _ in range(50):
            sock = socket.create_connection((LOOPBACK, service.port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
            slow.append(sock)
        assert service.request("GET", "/health", token=None)[0] == 200
        time.sleep(2.0)
        for sock in slow:
            assert sock.recv(100) == b""  # the service closed it
            sock.close()
    finally:
        _stop(service)


def test_bad_bytes_secrets_in_urls_and_what_a_client_learns(home: Path) -> None:
    service = _start(home)
    try:
        conn = http.client.HTTPConnection(LOOPBACK, service.port, timeout=10)
        conn.putrequest("GET", "/v1/status")
        conn.putheader("Authorization", b"Bearer \xff\xfe not utf-8")
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 401
        assert json.loads(response.read())["error"]
        assert response.getheader("Server") == "metanode"
        conn.close()

        status, _, _ = service.request(
            "POST", "/v1/blocks?name=quarterly-secret-plan.txt&token=leaked-in-url", body=b"x"
        )
        assert status == 201
        for method, path, code in (("GET", "/no/such/route", 404), ("PUT", "/v1/status", 405)):
            status, headers, body = service.request(method, path)
            assert status == code
            assert headers["Content-Type"].startswith("application/json")
            assert json.loads(body)["error"]
        shutil.rmtree(home / "providers" / "local-2")  # status now reports an error
        status, _, body = service.request("GET", "/v1/status")
        report = json.loads(body)
        errors = [p["error"] for p in report["providers"] if p["error"]]
        assert errors and not any(str(home) in e or "/" in e.replace("<path>", "") for e in errors)
    finally:
        service.process.send_signal(15)
        service.process.communicate(timeout=60)
    log = service.log.read_text(errors="replace")
    assert "POST /v1/blocks 201" in log  # the access log is there, without its query
    assert "quarterly-secret-plan" not in log and "leaked-in-url" not in log
    assert "Traceback" not in log


def test_a_non_loopback_bind_needs_an_explicit_flag(home: Path) -> None:
    env = {**os.environ, "METANODE_HOME": str(home), "METANODE_PASSPHRASE": PASSPHRASE}
    done = subprocess.run(
        [*START, "--host", "0.0.0.0", "--port", "1"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"--insecure-plain-http" in done.stderr


def test_the_api_matches_its_openapi_description(home: Path) -> None:
    """schemathesis generates requests from docs/api/openapi.yaml (bounded: a few examples
    per operation, under a minute) and checks every response against it."""
    schemathesis = shutil.which("schemathesis") or str(Path(sys.executable).parent / "st")
    service = _start(home)
    try:
        done = subprocess.run(
            [
                schemathesis, "run", "docs/api/openapi.yaml",
                "--url", f"http://{LOOPBACK}:{service.port}",
                "--header", f"Authorization: Bearer {service.token}",
                "--checks", "all", "--max-examples", "10", "--seed", "1",
                "--request-timeout", "20",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).parents[2],
        )  # fmt: skip
    finally:
        _stop(service)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_a_flood_of_bad_tokens_costs_the_trail_a_bounded_amount(home: Path) -> None:
    trail = home / "audit.sqlite"
    service = _start(home)
    try:
        conn = http.client.HTTPConnection(LOOPBACK, service.port, timeout=10)
        for i in range(3000):
            conn.request("GET", "/v1/status", headers={"Authorization": f"Bearer wrong-{i}"})
            response = conn.getresponse()
            response.read()
            assert response.status == 401
        conn.close()
        assert service.request("GET", "/v1/status")[0] == 200  # the right token still works
    finally:
        _stop(service)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        refusals = list(node.audit.trail.events(event_type="auth_failure"))
    assert sum(int(r.detail["count"]) for r in refusals) == 3000
    assert len(refusals) <= 2  # one per source per interval (and the flush at stop)
    assert trail.stat().st_size < 256 * 1024
