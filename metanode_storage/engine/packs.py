"""Pack blobs: many sealed chunks in one provider blob.

A store appends each chunk's sealed replica to the open pack of that replica's provider
and uploads a pack once it reaches the target size, and every open pack at the end of
the store. Each chunk stays sealed on its own (its own key, a fresh nonce), so a read
fetches only its byte range. A pack ends in random padding up to its Padmé length and
at least ``MIN_PACK`` bytes, so a provider learns neither how many chunks a pack holds
nor the size of a small file. Layout::

    sealed chunk || sealed chunk || ... || random padding

Nothing inside says where a chunk starts: only the map does (key, offset, length per
replica). A pack's name is a fresh random blob key, like any other blob's.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

from metanode_storage.blockmap.records import Replica
from metanode_storage.engine import blobformat
from metanode_storage.errors import ProviderError
from metanode_storage.providers.base import BlobStore

MIN_PACK = 4096
_UPLOADS_IN_FLIGHT = 8  # packs being uploaded at once: bounds memory


def padded_size(length: int) -> int:
    return max(MIN_PACK, blobformat.padme(length))


@dataclass(frozen=True)
class PackedChunk:
    """One sealed chunk in a pack, with what it takes to re-seal it elsewhere."""

    chunk_id: bytes
    chunk_key: bytes
    offset: int
    size: int
    fragment: int = -1  # the fragment's index, for an erasure-coded chunk


@dataclass
class Pack:
    provider: str
    key: str
    buffer: bytearray = field(default_factory=bytearray)
    chunks: list[PackedChunk] = field(default_factory=list)

    def sealed(self, chunk: PackedChunk) -> bytes:
        return bytes(self.buffer[chunk.offset : chunk.offset + chunk.size])


@dataclass(frozen=True)
class FailedPack:
    pack: Pack
    error: ProviderError


class PackWriter:
    """Collects sealed chunks into packs, one open pack per provider; thread-safe."""

    def __init__(
        self,
        providers: Mapping[str, BlobStore],
        io_pool: Executor,
        owner_key: bytes,
        target_bytes: int,
    ) -> None:
        self._providers = providers
        self._io = io_pool
        self._owner_key = owner_key
        self._target = target_bytes
        self._open: dict[str, Pack] = {}
        self._uploading: deque[tuple[Pack, Future[None]]] = deque()
        self._failed: list[FailedPack] = []
        self.uploaded: list[tuple[str, str]] = []  # (provider, key) of every pack put
        self._lock = threading.Lock()

    def add(
        self,
        provider: str,
        chunk_id: bytes,
        chunk_key: bytes,
        sealed: bytes,
        fragment: int = -1,
    ) -> Replica:
        """Append one sealed chunk (or fragment) to ``provider``'s open pack; where it
        will be."""
        with self._lock:
            pack = self._open.get(provider)
            if pack is not None and len(pack.buffer) + len(sealed) > self._target:
                self._upload(self._open.pop(provider))  # a big chunk starts a pack of its own
                pack = None
            if pack is None:
                pack = self._open[provider] = Pack(
                    provider, blobformat.new_blob_key(self._owner_key)
                )
            offset = len(pack.buffer)
            pack.buffer += sealed
            pack.chunks.append(PackedChunk(chunk_id, chunk_key, offset, len(sealed), fragment))
            if len(pack.buffer) >= self._target:
                self._upload(self._open.pop(provider))
            return Replica(provider, pack.key, len(sealed), offset, fragment)

    def _upload(self, pack: Pack) -> None:
        """Start the upload (the caller holds the lock); wait for the oldest when many
        are under way."""
        while len(self._uploading) >= _UPLOADS_IN_FLIGHT:
            self._settle(*self._uploading.popleft())
        size = len(pack.buffer)
        blob = bytes(pack.buffer) + os.urandom(padded_size(size) - size)
        store = self._providers[pack.provider]
        self.uploaded.append((pack.provider, pack.key))
        self._uploading.append((pack, self._io.submit(store.put, pack.key, blob)))

    def _settle(self, pack: Pack, upload: Future[None]) -> None:
        try:
            upload.result()
        except ProviderError as exc:
            self._failed.append(FailedPack(pack, exc))
            return
        pack.buffer = bytearray()  # durable: the bytes are no longer needed here

    def finish(self) -> list[FailedPack]:
        """Upload every open pack and wait for all uploads; the packs that failed."""
        with self._lock:
            for provider in list(self._open):
                self._upload(self._open.pop(provider))
            while self._uploading:
                self._settle(*self._uploading.popleft())
            failed, self._failed = self._failed, []
            return failed
