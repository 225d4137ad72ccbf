"""One conformance suite for every provider family: local disk, S3 (moto server),
Azure Blob (Azurite) and GCS (fake-gcs-server), all on 127.0.0.1."""

from __future__ import annotations

import base64
import os
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from metanode_storage.config.secrets import Secret
from metanode_storage.errors import ObjectNotFound, PermissionDenied, ProviderUnavailable
from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.catalogue import open_provider
from metanode_storage.providers.fsspec_store import LocalBlobStore
from tests.conftest import cloud_provider
from tests.servers import AZURITE_KEY, azurite_connection_string, free_port, moto_server

FAMILIES = ["local", "s3", "azure", "gcs"]


def _key() -> str:
    return os.urandom(16).hex()


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _open(family: str, request: pytest.FixtureRequest, tmp_path: Path, bucket: str) -> BlobStore:
    if family == "local":
        root = tmp_path / bucket
        root.mkdir()
        return LocalBlobStore("local-test", str(root))
    server = request.getfixturevalue(f"{family}_server")
    settings, credentials = cloud_provider(family, server.endpoint, f"{family}-test", bucket)
    return open_provider(settings, credentials)


@pytest.fixture
def store(family: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    blob_store = _open(family, request, tmp_path, f"mn-{uuid.uuid4().hex[:12]}")
    blob_store.create_bucket()
    yield blob_store


def test_put_get_size_round_trip(store: BlobStore) -> None:
    key, data = _key(), os.urandom(70_000)
    store.put(key, data)
    assert store.get(key) == data
    assert store.size(key) == len(data)


def test_empty_blob(store: BlobStore) -> None:
    key = _key()
    store.put(key, b"")
    assert store.get(key) == b""


def test_overwrite_replaces(store: BlobStore) -> None:
    key = _key()
    store.put(key, b"one")
    store.put(key, b"two")
    assert store.get(key) == b"two"


def test_missing_object(store: BlobStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get(_key())
    with pytest.raises(ObjectNotFound):
        store.size(_key())


def test_delete_is_idempotent(store: BlobStore) -> None:
    key = _key()
    store.put(key, b"x")
    store.delete(key)
    store.delete(key)
    with pytest.raises(ObjectNotFound):
        store.get(key)


def test_list_shows_exactly_the_blobs(store: BlobStore) -> None:
    keys = {_key() for _ in range(5)}
    for key in keys:
        store.put(key, key.encode())
    assert set(store.list_keys()) == keys
    store.delete(next(iter(keys)))
    assert len(set(store.list_keys())) == 4


def test_list_of_an_empty_store(store: BlobStore) -> None:
    assert list(store.list_keys()) == []


def test_reachable_probe(store: BlobStore) -> None:
    store.check_reachable()


def test_a_missing_bucket_is_unavailable_not_missing_objects(
    family: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if family == "local":
        absent: BlobStore = LocalBlobStore("local-test", str(tmp_path / "never-created"))
    else:
        absent = _open(family, request, tmp_path, f"mn-absent-{uuid.uuid4().hex[:8]}")
    with pytest.raises(ProviderUnavailable):
        absent.check_reachable()
    with pytest.raises(ProviderUnavailable):
        absent.get(_key())


def test_large_object(store: BlobStore) -> None:
    # Larger than any blob the engine writes (4 MiB chunk + frame + padding).
    key, data = _key(), os.urandom(12 * 1024 * 1024)
    store.put(key, data)
    assert store.get(key) == data


def test_concurrent_puts(store: BlobStore) -> None:
    blobs = {_key(): os.urandom(20_000) for _ in range(24)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: store.put(*item), blobs.items()))
    with ThreadPoolExecutor(8) as pool:
        fetched = dict(zip(blobs, pool.map(store.get, blobs), strict=True))
    assert fetched == blobs


def test_keys_are_validated(store: BlobStore) -> None:
    with pytest.raises(Exception, match="hex"):
        store.put("../../etc/passwd", b"x")


class _FrozenServer:
    """A TCP listener that accepts connections and never answers (a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("cloud", ["s3", "azure", "gcs"])
@pytest.mark.parametrize("condition", ["dead", "frozen"])
def test_an_unresponsive_endpoint_fails_within_the_deadline(cloud: str, condition: str) -> None:
    frozen = _FrozenServer() if condition == "frozen" else None
    endpoint = frozen.endpoint if frozen else f"http://127.0.0.1:{free_port()}"  # nothing there
    settings, credentials = cloud_provider(cloud, endpoint, "unresponsive", "mn-bucket")
    store = open_provider(replace(settings, timeout=1.0), credentials)
    started = time.monotonic()
    try:
        with pytest.raises(ProviderUnavailable):
            store.get(_key())
    finally:
        if frozen:
            frozen.close()
    elapsed = time.monotonic() - started
    # Refused connections: the timeout (1 s) plus at most one quick retry. A hung server:
    # the deadline, the timeout plus one second per MB of the largest blob (5 MiB).
    assert elapsed < (1.0 + 3.0 if condition == "dead" else 1.0 + 5.3 + 0.5), elapsed


def test_range_read(store: BlobStore) -> None:
    key, data = _key(), os.urandom(100_000)
    store.put(key, data)
    assert store.get_range(key, 0, 10) == data[:10]
    assert store.get_range(key, 4096, 8192) == data[4096:8192]
    assert store.get_range(key, 99_990, 100_000) == data[-10:]
    with pytest.raises(ObjectNotFound):
        store.get_range(_key(), 0, 10)


@pytest.mark.parametrize("cloud", ["s3", "azure"])
def test_rejected_credentials_are_a_permission_error(
    cloud: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """gcs: fake-gcs-server has no authentication, so this case cannot be shown there."""
    if cloud == "s3":
        # A second moto server that enforces IAM: unknown access keys are refused with 403.
        server = moto_server(tmp_path)
        server.environment = {"INITIAL_NO_AUTH_ACTION_COUNT": "0"}
        server.start()
        request.addfinalizer(server.kill)
        settings, credentials = cloud_provider("s3", server.endpoint, "s3-denied", "mn-denied")
    else:
        server = request.getfixturevalue("azure_server")
        settings, _ = cloud_provider("azure", server.endpoint, "azure-denied", "mn-denied")
        wrong = azurite_connection_string(server.endpoint).replace(
            AZURITE_KEY, base64.b64encode(b"x" * 64).decode()
        )
        credentials = {"connection_string": Secret(wrong.encode())}
    store = open_provider(settings, credentials)
    with pytest.raises(PermissionDenied):
        store.put(_key(), b"x")
    with pytest.raises(PermissionDenied):
        store.get(_key())
