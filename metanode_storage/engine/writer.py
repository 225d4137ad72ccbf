"""Writing one chunk: frame it once, seal it per replica, upload replicas concurrently.

Replicas go to distinct providers in a random order; when one fails the
next spare provider takes its place, and a provider that failed once is not
tried again for the rest of the store.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, Future

from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.crypto import aead
from metanode_storage.engine import blobformat
from metanode_storage.errors import NotEnoughProviders, ProviderError
from metanode_storage.providers.base import BlobStore

_rng = random.SystemRandom()


def chunk_key_aad(chunk_id: bytes, data_key_id: str) -> bytes:
    return b"chunk-key\0" + chunk_id + b"\0" + data_key_id.encode()


class ChunkWriter:
    def __init__(
        self,
        providers: Mapping[str, BlobStore],
        io_pool: Executor,
        *,
        replication_factor: int,
        allow_under_replication: bool,
        data_key_id: str,
        data_key: bytes,
        owner_key: bytes,
        compress: bool,
        encrypt: bool,
    ) -> None:
        self._providers = providers
        self._owner_key = owner_key
        self._io = io_pool
        self._rf = replication_factor
        self._allow_under = allow_under_replication
        self._data_key_id = data_key_id
        self._data_key = data_key
        self._compress = compress
        self._encrypt = encrypt
        self._failed: dict[str, ProviderError] = {}
        self._failed_lock = threading.Lock()

    def write(
        self,
        chunk_id: bytes,
        plaintext: bytes,
        candidates: Sequence[str],
        last_resort: Sequence[str] = (),
    ) -> ChunkRecord:
        """Seal and upload one chunk to ``replication_factor`` distinct providers.

        ``candidates`` are tried in random order; ``last_resort`` (providers
        known to be Offline) only when the candidates run out.
        """
        frame = blobformat.make_frame(plaintext, self._compress)
        chunk_key = aead.new_key()
        order = list(candidates)
        _rng.shuffle(order)
        order += last_resort
        written: list[Replica] = []
        errors: list[ProviderError] = []
        while len(written) < self._rf:
            with self._failed_lock:
                order = [p for p in order if p not in self._failed]
            batch, order = order[: self._rf - len(written)], order[self._rf - len(written) :]
            if not batch:
                break
            uploads: dict[str, Future[Replica]] = {
                name: self._io.submit(self._put, name, frame, chunk_key, chunk_id) for name in batch
            }
            for name, future in uploads.items():
                try:
                    written.append(future.result())
                except ProviderError as exc:
                    errors.append(exc)
                    with self._failed_lock:
                        self._failed.setdefault(name, exc)
        if len(written) < self._rf and not (self._allow_under and written):
            self.discard(written)
            causes = "; ".join(str(e) for e in errors) or "no provider left to try"
            raise NotEnoughProviders(
                f"not enough providers: {len(written)} of {self._rf} replicas could be "
                f"written ({causes})",
                "fix or add providers, or set allow_under_replication in config.toml",
            )
        wrapped = aead.seal(self._data_key, chunk_key, chunk_key_aad(chunk_id, self._data_key_id))
        return ChunkRecord(
            chunk_id, len(plaintext), self._data_key_id, wrapped, tuple(written), self._rf
        )

    def _put(self, provider: str, frame: bytes, chunk_key: bytes, chunk_id: bytes) -> Replica:
        return put_replica(
            self._providers[provider], frame, chunk_key, chunk_id, self._encrypt, self._owner_key
        )

    def discard(self, replicas: Sequence[Replica]) -> None:
        """Best-effort removal of blobs that no map row will point to."""
        for replica in replicas:
            store = self._providers.get(replica.provider)
            if store is None:
                continue
            with contextlib.suppress(ProviderError):  # else an orphan, for `gc` to remove
                store.delete(replica.key)


def put_replica(
    store: BlobStore,
    frame: bytes,
    chunk_key: bytes,
    chunk_id: bytes,
    encrypt: bool,
    owner_key: bytes,
) -> Replica:
    """Seal ``frame`` for one more replica (fresh nonce, fresh random name) and upload it."""
    blob = blobformat.seal_replica(frame, chunk_key, chunk_id, encrypt)
    key = blobformat.new_blob_key(owner_key)
    store.put(key, blob)
    return Replica(store.name, key, len(blob))
