"""Reading one chunk with failover, and checking one replica, with every byte verified.

A replica counts as good only if its AES-GCM tag (or HMAC) holds, its frame
is consistent, and the plaintext has the chunk's size and keyed address.
A provider that does not answer is skipped for the rest of the run.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.crypto import aead
from metanode_storage.engine import blobformat
from metanode_storage.engine.chunk_keys import unwrap_chunk_key
from metanode_storage.engine.placement import read_order
from metanode_storage.errors import (
    IntegrityError,
    ObjectNotFound,
    ProviderError,
    ProviderUnavailable,
)
from metanode_storage.providers.base import BlobStore

MISSING = "missing"
CORRUPT = "corrupt"
UNREACHABLE = "unreachable"
UNCONFIGURED = "unconfigured"
GOOD = "good"


@dataclass(frozen=True)
class ReplicaCheck:
    provider: str
    state: str  # GOOD, MISSING, CORRUPT, UNREACHABLE or UNCONFIGURED
    detail: str = ""

    @property
    def is_fault(self) -> bool:
        """Missing or corrupt: the replica itself is bad, not merely out of reach."""
        return self.state in (MISSING, CORRUPT)


class ChunkReader:
    def __init__(
        self,
        providers: Mapping[str, BlobStore],
        dedup_key: bytes,
        data_keys: Mapping[str, bytes],
        is_offline: Callable[[str], bool],
    ) -> None:
        self._providers = providers
        self._dedup_key = dedup_key
        self._data_keys = data_keys
        self._is_offline = is_offline

    def use_data_keys(self, data_keys: Mapping[str, bytes]) -> None:
        self._data_keys = data_keys

    def chunk_key(self, record: ChunkRecord) -> bytes:
        """The chunk's own AES key, unwrapped from its record."""
        return unwrap_chunk_key(self._data_keys, record)

    def check_replica(
        self, record: ChunkRecord, replica: Replica, chunk_key: bytes | None = None
    ) -> tuple[ReplicaCheck, bytes | None]:
        """Fetch and fully verify one replica. Never raises for a bad replica."""
        store = self._providers.get(replica.provider)
        if store is None:
            return ReplicaCheck(
                replica.provider, UNCONFIGURED, "provider no longer configured"
            ), None
        key = chunk_key if chunk_key is not None else self.chunk_key(record)
        try:
            if replica.in_pack:  # only this chunk's bytes of the pack
                end = replica.offset + replica.size
                blob = store.get_range(replica.key, replica.offset, end)
            else:
                blob = store.get(replica.key)
        except ObjectNotFound:
            return ReplicaCheck(replica.provider, MISSING, "blob not found"), None
        except ProviderError as exc:
            return ReplicaCheck(replica.provider, UNREACHABLE, exc.message), None
        if replica.in_pack and len(blob) != replica.size:
            return ReplicaCheck(replica.provider, CORRUPT, "the pack is truncated"), None
        try:
            frame = blobformat.open_replica(blob, key, record.chunk_id)
            data = blobformat.read_frame(frame, record.plain_size)
        except blobformat.BlobInvalid as exc:
            return ReplicaCheck(replica.provider, CORRUPT, str(exc)), None
        if len(data) != record.plain_size or not hmac.compare_digest(
            aead.keyed_hash(self._dedup_key, data), record.chunk_id
        ):
            return ReplicaCheck(replica.provider, CORRUPT, "content address mismatch"), None
        return ReplicaCheck(replica.provider, GOOD), data

    def read(self, record: ChunkRecord) -> tuple[bytes, list[ReplicaCheck]]:
        """The chunk's plaintext from the first good replica, and what was wrong with others.

        Replicas are tried in random order (spreading load), with providers
        known to be Offline moved to the end: they cost nothing unless every
        other copy fails. Backup locations come last of all.
        """
        chunk_key = self.chunk_key(record)
        checks: list[ReplicaCheck] = []
        for replica in read_order(record.replicas, record.backups, self._is_offline):
            check, data = self.check_replica(record, replica, chunk_key)
            checks.append(check)
            if data is not None:
                return data, checks
        label = record.chunk_id.hex()[:12]
        details = "; ".join(f"{c.provider}: {c.state} ({c.detail})" for c in checks)
        if any(c.state == UNREACHABLE for c in checks):
            raise ProviderUnavailable(
                ",".join(c.provider for c in checks if c.state == UNREACHABLE),
                f"no good replica of chunk {label} could be read: {details}",
                "bring the provider back; the other replicas are missing or corrupt",
            )
        raise IntegrityError(
            f"every replica of chunk {label} is missing or corrupt: {details}",
            "the data cannot be recovered from this node's providers",
        )
