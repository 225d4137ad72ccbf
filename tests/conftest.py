"""Shared fixtures: a node with a cheap KDF, and the CLI driven in-process."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.cli.app import main
from metanode_storage.crypto.kdf import KdfParams

PASSPHRASE = "correct horse battery staple"


def cheap_kdf() -> KdfParams:
    """Argon2id at 8 MiB, t=1: the same code path as production, fast enough for tests."""
    return KdfParams.fresh(iterations=1, memory_kib=8 * 1024, lanes=1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "node"
    init_node(path, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    return path


@pytest.fixture
def node(home: Path) -> Iterator[Node]:
    with Node.open(home, Secret(PASSPHRASE.encode())) as opened:
        yield opened


def provider_dirs(home: Path) -> list[Path]:
    return sorted((home / "providers").iterdir())


def blob_files(home: Path) -> list[Path]:
    return sorted(p for d in provider_dirs(home) for p in d.rglob("*") if p.is_file())


@dataclass
class CliResult:
    exit_code: int
    stdout_bytes: bytes
    stderr: str

    @property
    def stdout(self) -> str:
        return self.stdout_bytes.decode(errors="replace")


CliRunnerFn = Callable[..., CliResult]


class _Stdout(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunnerFn]:
    monkeypatch.setenv("METANODE_HOME", str(home))
    monkeypatch.setenv("METANODE_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("METANODE_DEBUG", raising=False)
    yield run_cli


def run_cli(*args: str, stdin: bytes = b"") -> CliResult:
    """Run the real entry point in-process with its own stdin, stdout and stderr."""
    out, err = io.BytesIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stdout = _Stdout(out, write_through=True)
    sys.stderr = err
    try:
        code = main(list(args))
        sys.stdout.flush()
        captured = out.getvalue()  # read before the wrapper is dropped and closes ``out``
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    return CliResult(code, captured, err.getvalue())
