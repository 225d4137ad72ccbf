"""The service over TLS 1.3, with a self-signed certificate the test makes for 127.0.0.1."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import json
import os
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import CliRunnerFn
from tests.servers import LOOPBACK
from tests.service.test_service import _start, _stop


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metanode test service")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "service.crt", directory / "service.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def _client(cert: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def test_tls_13_serves_and_nothing_older_or_plain_gets_in(home: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    service = _start(home, "--tls-cert", str(cert), "--tls-key", str(key), tls=_client(cert))
    try:
        payload = os.urandom(200_000)
        status, _, body = service.request("POST", "/v1/blocks?name=t.bin", payload)
        assert status == 201, body
        block_id = json.loads(body)["block_id"]
        status, _, data = service.request("GET", f"/v1/blocks/{block_id}")
        assert status == 200 and data == payload
        conn = service.connect()  # what was negotiated
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.version() == "TLSv1.3"
        conn.close()
        with pytest.raises(ssl.SSLError):  # a TLS 1.2 client is refused in the handshake
            conn12 = http.client.HTTPSConnection(
                LOOPBACK, service.port, timeout=10, context=_client(cert, ssl.TLSVersion.TLSv1_2)
            )
            conn12.request("GET", "/health")
        plain = http.client.HTTPConnection(LOOPBACK, service.port, timeout=10)
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain.request("GET", "/health")  # plain HTTP to a TLS port gets no answer
            plain.getresponse()
        untrusting = http.client.HTTPSConnection(
            LOOPBACK, service.port, timeout=10, context=ssl.create_default_context()
        )
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.request("GET", "/health")
        # a client that opens the socket and never starts the handshake is dropped
        with socket.create_connection((LOOPBACK, service.port), timeout=30) as idle:
            assert idle.recv(1) == b""
    finally:
        assert _stop(service) == 0


def test_tls_settings_are_checked_before_anything_starts(cli: CliRunnerFn, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    start = ("storage", "distributed", "start", "--port", "1")
    only_cert = cli(*start, "--tls-cert", str(cert))
    assert only_cert.exit_code == 2 and "go together" in only_cert.stderr
    swapped = cli(*start, "--tls-cert", str(key), "--tls-key", str(cert))
    assert swapped.exit_code == 2 and "--tls-cert" in swapped.stderr
    missing = cli(*start, "--tls-cert", str(tmp_path / "nope"), "--tls-key", str(key))
    assert missing.exit_code == 2 and "nope" in missing.stderr
    exposed = cli(*start, "--host", "0.0.0.0")
    assert exposed.exit_code == 2 and "--tls-cert" in exposed.stderr
