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

Concurrent stores share one PackWriter (the service's uploads, each on its own thread):
their pieces go into the same open pack of a provider, and a store's ``flush`` uploads
the open packs holding its pieces and waits for every pack that holds one, whoever
started it. Stores that meet in a pack share its PUT and its fsync, as they share the
map commit (engine/group_commit.py).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_for
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
    owner: int = 0  # which writer put it there (packs.py: concurrent stores share packs)


@dataclass(eq=False)
class Pack:
    provider: str
    key: str
    # The sealed pieces, as they came: joined once, with the padding, when the pack is
    # uploaded. Appending to one buffer instead copied each piece twice more (into the
    # buffer, then out of it), which was a tenth of a large store's CPU.
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0  # of the pieces, unpadded
    chunks: list[PackedChunk] = field(default_factory=list)
    upload: Future[None] | None = None  # None while the pack is open

    def sealed_chunks(self) -> Iterator[tuple[PackedChunk, bytes]]:
        """Each chunk in the pack with its sealed bytes (to move them elsewhere)."""
        return zip(self.chunks, self.pieces, strict=True)

    @property
    def error(self) -> ProviderError | None:
        """Why its upload failed; None while open, uploading, or once durable."""
        if self.upload is None or not self.upload.done():
            return None
        failure = self.upload.exception()
        return failure if isinstance(failure, ProviderError) else None

    def held_only_by(self, owner: int) -> bool:
        return all(chunk.owner == owner for chunk in self.chunks)


@dataclass(frozen=True)
class FailedPack:
    pack: Pack
    error: ProviderError


class PackWriter:
    """Collects sealed chunks into packs, one open pack per provider; thread-safe, and
    shared by concurrent writers (each names itself by an ``owner`` number)."""

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
        self._in_flight: deque[Future[None]] = deque()
        # per owner, the packs holding its pieces that it has not flushed yet
        self._unflushed: dict[int, dict[int, Pack]] = {}
        self._flushing: dict[str, Future[None]] = {}  # per provider, the last flush's upload
        self._lock = threading.Lock()

    def add(
        self,
        provider: str,
        chunk_id: bytes,
        chunk_key: bytes,
        sealed: bytes,
        fragment: int = -1,
        owner: int = 0,
    ) -> Replica:
        """Append one sealed chunk (or fragment) to ``provider``'s open pack; where it
        will be."""
        with self._lock:
            pack = self._open.get(provider)
            if pack is not None and pack.size + len(sealed) > self._target:
                self._upload(self._open.pop(provider))  # a big chunk starts a pack of its own
                pack = None
            if pack is None:
                pack = self._open[provider] = Pack(
                    provider, blobformat.new_blob_key(self._owner_key)
                )
            offset = pack.size
            pack.pieces.append(sealed)
            pack.size += len(sealed)
            pack.chunks.append(
                PackedChunk(chunk_id, chunk_key, offset, len(sealed), fragment, owner)
            )
            self._unflushed.setdefault(owner, {})[id(pack)] = pack
            if pack.size >= self._target:
                self._upload(self._open.pop(provider))
            return Replica(provider, pack.key, len(sealed), offset, fragment)

    def _upload(self, pack: Pack) -> None:
        """Start the upload (the caller holds the lock); wait for the oldest when many
        are under way."""
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft()
        if len(self._in_flight) >= _UPLOADS_IN_FLIGHT:
            wait_for([self._in_flight.popleft()])
        blob = b"".join([*pack.pieces, os.urandom(padded_size(pack.size) - pack.size)])
        pack.upload = self._io.submit(self._providers[pack.provider].put, pack.key, blob)
        pack.upload.add_done_callback(lambda _: self._settled(pack))
        self._in_flight.append(pack.upload)

    @staticmethod
    def _settled(pack: Pack) -> None:
        assert pack.upload is not None
        if not pack.upload.cancelled() and pack.upload.exception() is None:
            pack.pieces = []  # durable: its bytes are not needed here again

    def flush(self, owner: int = 0) -> list[Pack]:
        """Upload every open pack holding a piece of ``owner``'s, and wait until every
        pack holding one is uploaded (or failed: see ``Pack.error``); those packs. Other
        owners' pieces in them ride along.

        As a group commit does: while a flush's upload to a provider is under way, the
        next one to that provider waits for it, and the pieces other stores add meanwhile
        join the pack it will upload (one PUT and one fsync for all of them)."""
        with self._lock:
            packs = list(self._unflushed.pop(owner, {}).values())
        for pack in packs:
            while True:
                with self._lock:
                    if pack.upload is not None:  # full, or flushed by another store
                        break
                    busy = self._flushing.get(pack.provider)
                    if busy is None or busy.done():
                        del self._open[pack.provider]
                        self._upload(pack)
                        assert pack.upload is not None
                        self._flushing[pack.provider] = pack.upload
                        break
                wait_for([busy])
        for pack in packs:
            assert pack.upload is not None
            failure = pack.upload.exception()  # waits
            if failure is not None and not isinstance(failure, ProviderError):
                raise failure
        return packs

    def finish(self) -> list[FailedPack]:
        """Upload every open pack and wait for all uploads; the packs that failed. For
        a writer of its own (one owner, or several that finish together)."""
        with self._lock:
            owners = list(self._unflushed)
        packs = {id(p): p for owner in owners for p in self.flush(owner)}
        return [FailedPack(p, p.error) for p in packs.values() if p.error is not None]
