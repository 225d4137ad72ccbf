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
from collections.abc import Sequence
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
    """The streams of a batch: every object that is not bundled (in the order given),
    then the bundles. ``placed`` then says where each object ended up."""

    def __init__(self, items: Sequence[tuple[str, BinaryIO | bytes]], cut_key: bytes) -> None:
        bundler: Bundler[BatchObject] = Bundler(cut_key, BATCH_BUNDLES)
        self._objects: list[BatchObject] = []
        self._streamed: list[BatchObject] = []
        self._bundles: list[Bundle[BatchObject]] = []
        self.streams: list[BinaryIO | bytes] = []  # ``bytes``: one chunk as it is
        for name, data in items:
            member = BatchObject(name)
            self._objects.append(member)
            if isinstance(data, bytes) and 0 < len(data) <= BATCH_BUNDLED_UP_TO:
                member.bundled = True
                if (done := bundler.add(member, data)) is not None:
                    self._bundles.append(done)
            else:
                self._streamed.append(member)
                self.streams.append(io.BytesIO(data) if isinstance(data, bytes) else data)
        if (last := bundler.close()) is not None:
            self._bundles.append(last)
        self.streams += [bundle.data for bundle in self._bundles]

    def placed(self, results: Sequence[tuple[int, int, str, int]]) -> list[BatchObject]:
        """Every object, in the order given, once the store has chunked ``streams``:
        ``results`` holds (first chunk, chunks, SHA-256, size) of each stream."""
        own = results[: len(self._streamed)]
        for member, (first, chunks, sha256, size) in zip(self._streamed, own, strict=True):
            member.first_chunk, member.chunks, member.sha256, member.size = (
                first,
                chunks,
                sha256,
                size,
            )
        for bundle, result in zip(self._bundles, results[len(own) :], strict=True):
            bundle.place(result[0])
        return self._objects
