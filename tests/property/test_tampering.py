"""Every kind of tampering with what providers hold is caught, and one good copy suffices."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from metanode_storage import Node, Secret, init_node
from metanode_storage.config.paths import NodeLayout
from metanode_storage.crypto.keystore import (
    DataKey,
    KeyMaterial,
    SigningKeyRecord,
    read_keystore,
    write_keystore,
)
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.errors import IntegrityError, SignatureInvalid
from tests.conftest import (
    PASSPHRASE,
    blob_files,
    cheap_kdf,
    data_blobs,
    flip_a_byte,
    provider_dirs,
)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _delete(path: Path) -> None:
    path.unlink()


def _empty(path: Path) -> None:
    path.write_bytes(b"")


TAMPERINGS: dict[str, Callable[[Path], None]] = {
    "truncate": _truncate,
    "delete": _delete,
    "empty": _empty,
}


def _blobs_of(provider: Path) -> list[Path]:
    return data_blobs(provider.parent.parent, provider)


@pytest.mark.parametrize("kind", sorted(["flip", *TAMPERINGS]))
def _tamper(node: Node, home: Path, kind: str, block_id: str, providers: set[str]) -> None:
    """Tamper with the block's copy on each of ``providers``. A flip lands inside the copy:
    the rest of its pack is random padding, which no reader ever looks at."""
    (chunk_id,) = node.blockmap.get_block(block_id).chunk_ids
    record = node.blockmap.get_chunk(chunk_id)
    assert record is not None
    for copy in record.replicas:
        if copy.provider not in providers:
            continue
        if kind == "flip":
            flip_a_byte(home, copy, at=random.randrange(copy.size))
        else:
            (path,) = [p for p in blob_files(home) if p.name == copy.key]
            TAMPERINGS[kind](path)


@pytest.mark.parametrize("kind", sorted(["flip", *TAMPERINGS]))
def test_one_bad_replica_is_survived_and_reported(node: Node, home: Path, kind: str) -> None:
    data = os.urandom(200_000)
    block = node.store_bytes(data)
    assert len(_blobs_of(provider_dirs(home)[0])) == 1
    _tamper(node, home, kind, block.block_id, {"local-1"})
    for _ in range(6):  # replicas are read in random order: give the bad one its chances
        assert node.retrieve_bytes(block.block_id) == data
    report = node.verify(block.block_id)
    assert report.ok
    assert [(f.provider, f.state) for f in report.faults] == [
        ("local-1", "missing" if kind == "delete" else "corrupt")
    ]
    assert node.status().faulty_replicas == 1
    assert node.status().data_integrity_percent == pytest.approx(200 / 3)


@pytest.mark.parametrize("kind", sorted(["flip", *TAMPERINGS]))
def test_all_replicas_bad_fails_loudly(node: Node, home: Path, kind: str) -> None:
    block = node.store_bytes(os.urandom(5000))
    _tamper(node, home, kind, block.block_id, {"local-1", "local-2", "local-3"})
    with pytest.raises(IntegrityError, match="every replica"):
        node.retrieve_bytes(block.block_id)
    assert not node.verify(block.block_id).ok


def test_swapped_blobs_are_caught(node: Node, home: Path) -> None:
    one = node.store_bytes(os.urandom(5000))
    two = node.store_bytes(os.urandom(5000))
    for provider in provider_dirs(home):
        a, b = _blobs_of(provider)
        raw_a, raw_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(raw_b)
        b.write_bytes(raw_a)
    for block in (one, two):
        with pytest.raises(IntegrityError):
            node.retrieve_bytes(block.block_id)


def test_a_blob_from_another_node_is_rejected(tmp_path: Path, node: Node, home: Path) -> None:
    other_home = tmp_path / "other"
    init_node(other_home, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    data = os.urandom(5000)
    with Node.open(other_home, Secret(PASSPHRASE.encode())) as other:
        other.store_bytes(data)
    mine = node.store_bytes(data)
    for provider, foreign in zip(provider_dirs(home), provider_dirs(other_home), strict=True):
        (own_blob,) = _blobs_of(provider)
        (their_blob,) = _blobs_of(foreign)
        own_blob.write_bytes(their_blob.read_bytes())
    with pytest.raises(IntegrityError):
        node.retrieve_bytes(mine.block_id)


def _rewrite_keystore(home: Path, change: Callable[[KeyMaterial], None]) -> None:
    passphrase = Secret(PASSPHRASE.encode())
    path = NodeLayout(home).keystore
    material = read_keystore(path, passphrase)
    change(material)
    write_keystore(path, material, passphrase, cheap_kdf())


def test_a_keystore_with_the_wrong_data_key_cannot_read(home: Path) -> None:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        block = node.store_bytes(b"payload" * 100)

    def swap_data_key(material: KeyMaterial) -> None:
        old = material.data_keys[0]
        material.data_keys[0] = DataKey(old.key_id, Secret(os.urandom(32)), old.created_at)

    _rewrite_keystore(home, swap_data_key)
    with (
        Node.open(home, Secret(PASSPHRASE.encode())) as node,
        pytest.raises(IntegrityError, match="wrapped key"),
    ):
        node.retrieve_bytes(block.block_id)


def test_a_block_signed_by_an_untrusted_key_is_refused(home: Path) -> None:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        block = node.store_bytes(b"payload")

    def replace_signing_key(material: KeyMaterial) -> None:
        material.signing_keys[:] = [SigningKeyRecord(NodeSigner.generate().seed, 0)]

    _rewrite_keystore(home, replace_signing_key)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        # refused twice over: the block's signature, and the trail (the providers'
        # checkpoints were signed by the real key, which this keystore no longer trusts)
        with pytest.raises(IntegrityError):
            node.retrieve_bytes(block.block_id)
        with pytest.raises(IntegrityError, match="does not extend"):
            node.verify(block.block_id)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        node.audit.enabled = False  # the block's own check, without the trail's
        with pytest.raises(SignatureInvalid):
            node.retrieve_bytes(block.block_id)
        assert not node.verify(block.block_id).ok
