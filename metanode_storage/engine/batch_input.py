"""What a batch store (``Node.store_many``) chunks: small objects share bundles.

Each object stays a block of its own, with its own id, data hash, proof and map
row. An object given as bytes of at most BATCH_BUNDLED_UP_TO is laid into a
bundle (engine/bundles.py) instead of becoming a chunk of its own; its block
names the bundle's chunk and its ``offset`` in it. A read fetches and checks
the whole bundle (AEAD tag and keyed address), then the object's own SHA-256.
Bundles here stay small (about 256 KiB) so that reading one object back alone
costs little more than reading it from a chunk of its own.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from metanode_storage.engine.bundles import Bundle, Bundler, BundleSizes

BATCH_BUNDLED_UP_TO = 64 * 1024
BATCH_BUNDLES = BundleSizes(64 * 1024, 256 * 1024, 1024 * 1024)
OFFSET = "offset"  # in a block's extra: where its bytes start in its one chunk, a bundle


@dataclass
class BatchObject:
    """One object of the batch, placed among the batch's chunks: ``offset`` is set
    for one laid into a bundle."""

    name: str
    size: int = 0
    sha256: str = ""
    offset: int = 0
    first_chunk: int = 0
    chunks: int = 0
    bundled: bool = False


class BatchInput:
    """The streams of a batch, each object that is not bundled and each bundle as soon
    as it is full, so that the workers seal and write one bundle while the next is laid
    out. ``placed`` then says where each object ended up."""

    def __init__(self, items: Sequence[tuple[str, BinaryIO | bytes]], cut_key: bytes) -> None:
        self._items = items
        self._cut_key = cut_key
        self._objects: list[BatchObject] = []
        self._sources: list[BatchObject | Bundle[BatchObject]] = []  # each stream's, in order

    def streams(self) -> Iterator[BinaryIO | bytes]:
        """What to chunk, in order (``bytes``: a bundle, one chunk as it is)."""
        bundler: Bundler[BatchObject] = Bundler(self._cut_key, BATCH_BUNDLES)
        for name, data in self._items:
            member = BatchObject(name)
            self._objects.append(member)
            if isinstance(data, bytes) and 0 < len(data) <= BATCH_BUNDLED_UP_TO:
                member.bundled = True
                if (done := bundler.add(member, data)) is not None:
                    self._sources.append(done)
                    yield done.data
            else:
                self._sources.append(member)
                yield io.BytesIO(data) if isinstance(data, bytes) else data
        if (last := bundler.close()) is not None:
            self._sources.append(last)
            yield last.data

    def placed(self, results: Sequence[tuple[int, int, str, int]]) -> list[BatchObject]:
        """Every object, in the order given, once the store has chunked ``streams``:
        ``results`` holds (first chunk, chunks, SHA-256, size) of each stream."""
        for source, (first, chunks, sha256, size) in zip(self._sources, results, strict=True):
            if isinstance(source, Bundle):
                source.place(first)
            else:
                source.first_chunk, source.chunks, source.sha256, source.size = (
                    first,
                    chunks,
                    sha256,
                    size,
                )
        return self._objects
