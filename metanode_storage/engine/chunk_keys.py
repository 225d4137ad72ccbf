"""Each chunk's own AES key, wrapped (AES-GCM) under a data key from the keystore.

The wrapped key lives in the chunk's map row; its associated data binds it to the chunk's
address and to the data key's id, so a wrapped key moved to another row, or relabelled
with another key id, does not open. Writing, reading and data-key rotation all go through
here.
"""

from __future__ import annotations

from collections.abc import Mapping

from metanode_storage.blockmap.records import ChunkRecord
from metanode_storage.crypto import aead
from metanode_storage.errors import IntegrityError, KeystoreDamaged


def _aad(chunk_id: bytes, data_key_id: str) -> bytes:
    return b"chunk-key\0" + chunk_id + b"\0" + data_key_id.encode()


def wrap_chunk_key(data_key: bytes, data_key_id: str, chunk_id: bytes, chunk_key: bytes) -> bytes:
    return aead.seal(data_key, chunk_key, _aad(chunk_id, data_key_id))


def unwrap_chunk_key(data_keys: Mapping[str, bytes], record: ChunkRecord) -> bytes:
    """The chunk's key, or KeystoreDamaged (its data key is gone) or IntegrityError (the
    wrapped key does not open: the map row or the keystore is damaged)."""
    data_key = data_keys.get(record.data_key_id)
    if data_key is None:
        raise KeystoreDamaged(
            f"data key {record.data_key_id} is not in the keystore",
            "restore the newest keystore",
        )
    try:
        return aead.open_sealed(
            data_key, record.wrapped_key, _aad(record.chunk_id, record.data_key_id)
        )
    except aead.OpenFailed:
        raise IntegrityError(
            f"the wrapped key of chunk {record.chunk_id.hex()[:12]} does not open",
            "the block map or keystore is damaged; restore a map backup",
        ) from None
