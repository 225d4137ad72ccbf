"""What the remote client's sealed tunnel costs over the plain API, both over TLS 1.3.

    python benchmarks/bench_remote.py [--mib 64] [--small 200]

Starts `metanode storage distributed start` on 127.0.0.1 with a self-signed certificate
(made here) on a fresh node with three local providers, then, in one run:
- one object of --mib MiB stored and retrieved through the plain API (`POST /v1/blocks`,
  `GET /v1/blocks/ID`, bearer token in a header) and through the sealed tunnel
  (`RemoteService.put` / `.get`: X-Wing envelope, AES-GCM frames, proof and hash checked);
- --small objects of 4 KiB stored each way, one request each.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from report_table import print_table  # benchmarks/ is on sys.path when run as a script

from metanode_storage import Node, Secret, init_node
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.transport.client import RemoteService

HOST = "127.0.0.1"
PASSPHRASE = "benchmark passphrase"


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
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
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Plain:
    """The plain API over TLS, streaming, as curl would use it."""

    def __init__(self, port: int, token: str, context: ssl.SSLContext) -> None:
        self._port, self._token, self._context = port, token, context

    def _conn(self) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            HOST, self._port, timeout=120, context=self._context, blocksize=1 << 20
        )

    def put(self, path: Path) -> str:
        conn = self._conn()
        with open(path, "rb") as body:
            conn.request(
                "POST",
                "/v1/blocks",
                body=body,
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Content-Length": str(path.stat().st_size),
                },
            )
            response = conn.getresponse()
            text = response.read()
        conn.close()
        assert response.status == 201, text
        return str(json.loads(text)["block_id"])

    def get(self, block_id: str, sink: Path) -> None:
        conn = self._conn()
        conn.request(
            "GET", f"/v1/blocks/{block_id}", headers={"Authorization": f"Bearer {self._token}"}
        )
        response = conn.getresponse()
        with open(sink, "wb") as out:
            while piece := response.read(1 << 20):
                out.write(piece)
        conn.close()
        assert response.status == 200


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--small", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        home = base / "node"
        init_node(home, Secret(PASSPHRASE.encode()), kdf=KdfParams.fresh(1, 8 * 1024, 1))
        with Node.open(home, Secret(PASSPHRASE.encode())) as node:
            token = node.keys.api_token.reveal().decode()
        cert, key = _certificate(base)
        with socket.create_server((HOST, 0)) as probe:
            port = probe.getsockname()[1]
        env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
        command = [sys.executable, "-m", "metanode_storage", "storage", "distributed", "start"]
        command += ["--port", str(port), "--tls-cert", str(cert), "--tls-key", str(key)]
        service = subprocess.Popen(
            command,
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            context = ssl.create_default_context(cafile=str(cert))
            plain = _Plain(port, token, context)
            remote = RemoteService(f"https://{HOST}:{port}", token, base / "pins.json", cafile=cert)
            deadline = time.monotonic() + 30
            while True:
                try:
                    remote.keys()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            big = base / "big.bin"
            with open(big, "wb") as out:
                for _ in range(args.mib):
                    out.write(os.urandom(1 << 20))
            small = [os.urandom(4096) for _ in range(args.small)]
            rows = []
            ids: dict[str, str] = {}
            put_plain = _timed(lambda: ids.__setitem__("plain", plain.put(big)))

            def put_sealed() -> None:
                with open(big, "rb") as body:
                    ids["sealed"] = str(remote.put(body, "big.bin")["block_id"])

            put_tunnel = _timed(put_sealed)
            get_plain = _timed(lambda: plain.get(ids["plain"], base / "out-plain"))

            def get_sealed() -> None:
                with open(base / "out-sealed", "wb") as out:
                    remote.get(ids["sealed"], out)

            get_tunnel = _timed(get_sealed)
            for path in (base / "out-plain", base / "out-sealed"):
                assert path.read_bytes() == big.read_bytes()
            mib = args.mib
            rows.append(
                (
                    f"store {mib} MiB",
                    f"{mib / put_plain:.0f} MiB/s",
                    f"{mib / put_tunnel:.0f} MiB/s",
                    f"{put_tunnel / put_plain:.2f}x",
                )
            )
            rows.append(
                (
                    f"retrieve {mib} MiB",
                    f"{mib / get_plain:.0f} MiB/s",
                    f"{mib / get_tunnel:.0f} MiB/s",
                    f"{get_tunnel / get_plain:.2f}x",
                )
            )
            small_paths = []
            for i, data in enumerate(small):
                path = base / f"s{i}"
                path.write_bytes(data)
                small_paths.append(path)
            plain_small = _timed(lambda: [plain.put(p) for p in small_paths])

            def sealed_small() -> None:
                for p in small_paths:
                    with open(p, "rb") as body:
                        remote.put(body)

            tunnel_small = _timed(sealed_small)
            n = args.small
            rows.append(
                (
                    f"store {n} x 4 KiB",
                    f"{n / plain_small:.0f}/s",
                    f"{n / tunnel_small:.0f}/s",
                    f"{tunnel_small / plain_small:.2f}x",
                )
            )
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=120)
    print_table(("over TLS 1.3", "plain API", "sealed tunnel", "tunnel time / plain"), rows)


if __name__ == "__main__":
    main()
