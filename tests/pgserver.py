"""A real PostgreSQL server on 127.0.0.1 for the tests, in a temporary directory.

``initdb`` and ``postgres`` come from Debian's postgresql package (installed by
``scripts/install-test-servers.sh`` when missing). The server runs as its own
process so a test can stop it mid-run and start it again on the same port and
data directory. PostgreSQL refuses to run as root, so under root it runs as the
``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.servers import LOOPBACK, free_port

USER = "metanode"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres_user() -> tuple[Callable[[], None] | None, int | None]:
    """Under root: a preexec function that drops to the postgres user, and its uid."""
    if os.geteuid() != 0:
        return None, None
    entry = pwd.getpwnam("postgres")

    def drop() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return drop, entry.pw_uid


@dataclass
class PostgresServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            if os.environ.get("CI"):
                raise RuntimeError("initdb is not installed: run scripts/install-test-servers.sh")
            pytest.skip("PostgreSQL is not installed (scripts/install-test-servers.sh)")
        self._bindir = bindir
        self._drop, uid = _as_postgres_user()
        if uid is not None:
            # pytest's directories are root's and closed (0700): the server gets its own
            self.workdir = Path(tempfile.mkdtemp(prefix="metanode-pg-"))
            os.chown(self.workdir, uid, -1)
        self.data = self.workdir / "data"
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                USER,
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            preexec_fn=self._drop,
        )

    def start(self) -> None:
        log = open(self.workdir / "postgres.log", "ab")  # noqa: SIM115 (the server keeps it)
        self.process = subprocess.Popen(
            [
                str(self._bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"unix_socket_directories={self.data}",
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=self._drop,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = (self.workdir / "postgres.log").read_text()[-2000:]
                raise RuntimeError(f"postgres exited: {text}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=1).close()
                return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("postgres did not start within 30 s")

    def stop(self, how: signal.Signals = signal.SIGINT) -> None:
        """SIGINT: a fast shutdown (clients cut off); SIGKILL: the server dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(how)
            self.process.wait(timeout=30)
        if how == signal.SIGKILL:  # its children (backends) are left to exit on their own
            time.sleep(0.5)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{USER}@{LOOPBACK}:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)
