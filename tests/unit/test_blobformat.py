from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metanode_storage.crypto import aead
from metanode_storage.engine import blobformat


@given(st.integers(min_value=0, max_value=1 << 40))
def test_padme_never_shrinks_and_costs_at_most_12_percent(length: int) -> None:
    padded = blobformat.padme(length)
    assert length <= padded <= max(length, int(length * 1.12) + 1)


@given(st.binary(max_size=5000), st.booleans(), st.booleans())
def test_replica_round_trip(data: bytes, compress: bool, encrypt: bool) -> None:
    key, chunk_id = aead.new_key(), os.urandom(32)
    frame = blobformat.make_frame(data, compress)
    blob = blobformat.seal_replica(frame, key, chunk_id, encrypt)
    assert blobformat.read_frame(blobformat.open_replica(blob, key, chunk_id), len(data)) == data


@pytest.mark.parametrize("encrypt", [True, False])
def test_every_flipped_byte_is_caught(encrypt: bool) -> None:
    key, chunk_id = aead.new_key(), os.urandom(32)
    blob = blobformat.seal_replica(blobformat.make_frame(b"x" * 300, True), key, chunk_id, encrypt)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x40
        with pytest.raises(blobformat.BlobInvalid):
            blobformat.open_replica(bytes(tampered), key, chunk_id)


def test_replicas_share_no_ciphertext_and_bind_their_chunk() -> None:
    key, chunk_id = aead.new_key(), os.urandom(32)
    frame = blobformat.make_frame(os.urandom(1000), True)
    one = blobformat.seal_replica(frame, key, chunk_id, True)
    two = blobformat.seal_replica(frame, key, chunk_id, True)
    assert one[1:13] != two[1:13] and one[20:] != two[20:]
    with pytest.raises(blobformat.BlobInvalid):
        blobformat.open_replica(one, key, os.urandom(32))
    with pytest.raises(blobformat.BlobInvalid):
        blobformat.open_replica(one, aead.new_key(), chunk_id)


def test_sealed_blob_hides_plaintext_and_exact_size() -> None:
    data = b"the secret payload " * 50
    blob = blobformat.seal_replica(
        blobformat.make_frame(data, False), aead.new_key(), os.urandom(32), True
    )
    assert b"secret" not in blob
    assert len(blob) >= len(data)
