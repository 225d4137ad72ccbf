"""Writing chunks: frame each once, seal it per piece, and pack the pieces.

A piece is a full replica of the frame, or under ``ec:K+M`` one of its K+M
Reed-Solomon fragments (engine/erasure.py). Pieces go to distinct providers in a
random order; when a pack upload fails its pieces move to spare providers, and a
provider that failed once is not tried again for the rest of the store.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import replace

from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.crypto import aead
from metanode_storage.engine import blobformat, erasure
from metanode_storage.engine.chunk_keys import wrap_chunk_key
from metanode_storage.engine.packs import Pack, PackWriter
from metanode_storage.engine.placement import providers_for_copies
from metanode_storage.errors import NotEnoughProviders, ProviderError
from metanode_storage.providers.base import BlobStore
from metanode_storage.redundancy import Redundancy

Piece = tuple[int, bytes]  # (fragment index or -1 for a full replica, the unsealed bytes)
_writer_numbers = itertools.count(1)  # owners in a shared PackWriter (0: a writer of its own)


class ChunkWriter:
    """Seals each new chunk's pieces into the packs of distinct providers, as many as
    ``redundancy`` asks (engine/packs.py); ``finish`` makes every pack durable, moving
    the pieces of a pack that failed to spare providers."""

    def __init__(
        self,
        providers: Mapping[str, BlobStore],
        io_pool: Executor,
        *,
        candidates: Sequence[str],
        last_resort: Sequence[str] = (),
        redundancy: Redundancy,
        allow_under_replication: bool,
        data_key_id: str,
        data_key: bytes,
        owner_key: bytes,
        compress: bool,
        encrypt: bool,
        pack_target_bytes: int,
        packs: PackWriter | None = None,
    ) -> None:
        """``packs``: a PackWriter shared with concurrent writers, or None for one of
        its own."""
        self._candidates = list(candidates)
        self._last_resort = list(last_resort)  # providers known Offline: only if needed
        self._redundancy = redundancy
        self._allow_under = allow_under_replication
        self._data_key_id = data_key_id
        self._data_key = data_key
        self._compress = compress
        self._encrypt = encrypt
        self._providers = providers
        self._packs = packs or PackWriter(providers, io_pool, owner_key, pack_target_bytes)
        self._number = next(_writer_numbers)
        self._flushed: dict[int, Pack] = {}  # every pack holding a piece of this writer's
        self._failed: dict[str, ProviderError] = {}
        self._lock = threading.Lock()

    def write(self, chunk_id: bytes, plaintext: bytes) -> ChunkRecord:
        """Compress once, cut into fragments if erasure-coded, seal each piece (fresh
        nonce each) into the pack of a randomly chosen distinct provider. Durable only
        after ``finish``."""
        frame = blobformat.make_frame(plaintext, self._compress)
        chunk_key = aead.new_key()
        scheme = self._redundancy
        if scheme.is_erasure_coded:
            pieces = list(enumerate(erasure.encode(frame, scheme.needed, scheme.parity)))
        else:
            pieces = [(-1, frame)] * scheme.pieces
        copies = self._place(chunk_id, chunk_key, pieces, set())
        wrapped = wrap_chunk_key(self._data_key, self._data_key_id, chunk_id, chunk_key)
        return ChunkRecord(
            chunk_id,
            len(plaintext),
            self._data_key_id,
            wrapped,
            copies,
            scheme.pieces,
            needed=scheme.needed,
        )

    def _place(
        self, chunk_id: bytes, chunk_key: bytes, pieces: Sequence[Piece], holding: set[str]
    ) -> tuple[Replica, ...]:
        """Seal each piece (fresh nonce each) into the pack of a spare provider, one
        provider per piece; pieces beyond the spares are left out (the record is short)."""
        return tuple(
            self._packs.add(
                provider,
                chunk_id,
                chunk_key,
                blobformat.seal_replica(
                    payload,
                    chunk_key,
                    blobformat.piece_address(chunk_id, index),
                    self._encrypt,
                ),
                index,
                self._number,
            )
            for provider, (index, payload) in zip(
                self._spares(holding, len(pieces)), pieces, strict=False
            )
        )

    def _spares(self, holding: set[str], wanted: int) -> list[str]:
        """Up to ``wanted`` providers that have not failed in this run and do not hold a
        piece of the chunk yet: candidates in random order, then last resorts."""
        with self._lock:
            excluded = set(self._failed) | holding
        return providers_for_copies(self._candidates, self._last_resort, excluded, wanted)

    def finish(self, records: Sequence[ChunkRecord]) -> list[ChunkRecord]:
        """Make every replica durable; the records as they ended up. A failed pack's
        chunks are re-sealed into packs of spare providers; too few replicas left for a
        chunk raises ``NotEnoughProviders`` (unless under-replication is allowed)."""
        current = {r.chunk_id: r for r in records}
        errors: list[ProviderError] = []
        while failed := [(p, e) for p in self._flush() if (e := p.error) is not None]:
            for pack, error in failed:
                errors.append(error)
                with self._lock:
                    self._failed.setdefault(pack.provider, error)
            for pack, _ in failed:
                for chunk, sealed in pack.sealed_chunks():
                    if chunk.owner != self._number:
                        continue  # another store's piece: that store moves it
                    record = current[chunk.chunk_id]
                    kept = tuple(r for r in record.replicas if r.key != pack.key)
                    address = blobformat.piece_address(chunk.chunk_id, chunk.fragment)
                    piece = blobformat.open_replica(sealed, chunk.chunk_key, address)
                    holding = {r.provider for r in kept}
                    moved = self._place(
                        chunk.chunk_id, chunk.chunk_key, [(chunk.fragment, piece)], holding
                    )
                    current[chunk.chunk_id] = replace(record, replicas=kept + moved)
        short = [r for r in current.values() if r.is_short]
        if short and not (self._allow_under and all(r.pieces >= r.needed for r in short)):
            self.discard_all()
            worst = min(r.pieces for r in short)
            scheme = self._redundancy
            kind = "fragments" if scheme.is_erasure_coded else "replicas"
            causes = "; ".join(sorted({str(e) for e in errors})) or "no provider left to try"
            raise NotEnoughProviders(
                f"not enough providers: {worst} of {scheme.pieces} {kind} could be written "
                f"({causes})",
                "fix or add providers, or set allow_under_replication in config.toml",
            )
        return [current[r.chunk_id] for r in records]

    def _flush(self) -> list[Pack]:
        """This writer's packs uploaded and waited for (engine/packs.py)."""
        packs = self._packs.flush(self._number)
        self._flushed.update((id(p), p) for p in packs)
        return packs

    def discard_all(self) -> None:
        """Best-effort removal of every pack this writer uploaded (a store that will not
        commit); what cannot be removed is an orphan, for `gc`. A pack shared with another
        store stays: its pieces of this store are dead bytes there, for `gc` to repack."""
        self._flush()
        for pack in self._flushed.values():
            if pack.held_only_by(self._number):
                with contextlib.suppress(ProviderError):
                    self._providers[pack.provider].delete(pack.key)
