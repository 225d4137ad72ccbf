"""Shared fixtures: a node with a cheap KDF, and the CLI driven in-process."""

from __future__ import annotations

import io
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.blockmap.records import Replica
from metanode_storage.cli.app import main
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.crypto.keystore import KeyMaterial, read_keystore
from metanode_storage.engine.auditing import checkpoint_blob_key
from metanode_storage.engine.backup import Locator
from metanode_storage.engine.blobformat import is_own_blob_key
from tests.pgserver import PostgresServer
from tests.servers import (
    AZURITE_ACCOUNT,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    ServerProcess,
    azurite_connection_string,
    azurite_server,
    moto_server,
)
from tests.servers import gcs_server as gcs_server_process

PASSPHRASE = "correct horse battery staple"


def cheap_kdf() -> KdfParams:
    """Argon2id at 8 MiB, t=1: the same code path as production, fast enough for tests."""
    return KdfParams.fresh(iterations=1, memory_kib=8 * 1024, lanes=1)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A node on three local providers, with the defaults users get (map backups on).
    Only the keystore's Argon2id cost is lowered; the backup locators keep theirs."""
    path = tmp_path / "node"
    init_node(path, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    return path


@pytest.fixture
def node(home: Path) -> Iterator[Node]:
    with Node.open(home, Secret(PASSPHRASE.encode())) as opened:
        yield opened


def provider_dirs(home: Path) -> list[Path]:
    return sorted((home / "providers").iterdir())


def blob_files(home: Path, passphrase: str = PASSPHRASE) -> list[Path]:
    """Every data blob on the local providers (the sealed audit checkpoints left out)."""
    return [p for d in provider_dirs(home) for p in data_blobs(home, d, passphrase)]


def data_blobs(home: Path, provider: Path, passphrase: str = PASSPHRASE) -> list[Path]:
    """The chunk blobs of one local provider, without its audit checkpoint and map backup
    log: those of this node carry its ownership tag (engine/blobformat.py)."""
    keys = read_keystore(home / "keystore.mnk", Secret(passphrase.encode()))
    return sorted(
        p for p in provider.rglob("*") if p.is_file() and is_own_blob_key(keys.owner_key, p.name)
    )


def flip_a_byte(home: Path, copy: Replica, at: int = 10) -> Path:
    """Corrupt one chunk copy on a local provider (a byte ``at`` bytes into it, inside its
    pack or its own blob); return the blob's path."""
    (path,) = [p for p in blob_files(home) if p.name == copy.key]
    body = bytearray(path.read_bytes())
    body[max(copy.offset, 0) + at] ^= 1
    path.write_bytes(bytes(body))
    return path


def named_blob_keys(node: Node) -> set[str]:
    """Every blob key the map names: packs (and blobs of their own) of every chunk copy."""
    return {copy.key for chunk in node.blockmap.chunks() for copy in chunk.all_copies}


def reserved_blob_keys(keys: KeyMaterial, provider: str) -> set[str]:
    """Names of the blobs on a provider that are not chunks (checkpoint, map backup)."""
    reserved = {checkpoint_blob_key(keys, provider)}
    if provider in keys.backup_locators:
        reserved.add(Locator.from_hex(keys.backup_locators[provider].reveal().decode()).blob_key)
    return reserved


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


# -- cloud protocol servers (session-wide; tests that kill one restart it) ----------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(moto_server(tmp_path_factory.mktemp("moto")))


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(azurite_server(tmp_path_factory.mktemp("azurite")))


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(gcs_server_process(tmp_path_factory.mktemp("gcs")))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 (tests that stop it start it again)."""
    server = PostgresServer(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.remove()


def _serve(server: ServerProcess) -> Iterator[ServerProcess]:
    server.start()
    try:
        yield server
    finally:
        server.kill()


def cloud_provider(
    family: str, endpoint: str, name: str, bucket: str
) -> tuple[ProviderSettings, dict[str, Secret]]:
    """Settings (and keystore credentials) for a provider on one of the test servers."""
    if family == "s3":
        return ProviderSettings(
            name, "aws", bucket=bucket, endpoint=endpoint, credentials="keystore", timeout=3.0
        ), {
            "access_key_id": Secret(S3_ACCESS_KEY.encode()),
            "secret_access_key": Secret(S3_SECRET_KEY.encode()),
        }
    if family == "azure":
        return ProviderSettings(
            name,
            "azure",
            bucket=bucket,
            account=AZURITE_ACCOUNT,
            credentials="keystore",
            timeout=3.0,
        ), {
            "connection_string": Secret(azurite_connection_string(endpoint).encode()),
        }
    if family == "gcs":
        return ProviderSettings(
            name,
            "gcp",
            bucket=bucket,
            endpoint=endpoint,
            account="metanode-test",
            credentials="anonymous",
            timeout=3.0,
        ), {}
    raise ValueError(family)


def cloud_node(
    tmp_path: Path,
    servers: Mapping[str, ServerProcess],
    local: Sequence[str] = (),
    **settings: Any,
) -> tuple[Path, dict[str, str]]:
    """A node at ``tmp_path / "node"`` on a provider per server (named after its family,
    each in a fresh bucket it creates), then local providers ``local`` in directories
    beside it. Returns the home and each cloud provider's bucket."""
    providers: list[ProviderSettings] = []
    credentials: dict[str, dict[str, Secret]] = {}
    buckets: dict[str, str] = {}
    for family, server in servers.items():
        buckets[family] = f"mn-{uuid.uuid4().hex[:12]}"
        provider, credentials[family] = cloud_provider(
            family, server.endpoint, family, buckets[family]
        )
        providers.append(provider)
    for name in local:
        (tmp_path / name).mkdir()
        providers.append(ProviderSettings(name, "local", path=str(tmp_path / name)))
    home = tmp_path / "node"
    init_node(
        home,
        Secret(PASSPHRASE.encode()),
        providers=providers,
        credentials=credentials,
        kdf=cheap_kdf(),
        **settings,
    )
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        for family in servers:
            node.providers[family].create_bucket()
    return home, buckets
