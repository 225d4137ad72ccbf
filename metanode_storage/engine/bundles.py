"""Small pieces of data laid end to end into bundles, each stored as one chunk.

A chunk of its own costs a placement draw, an AES-GCM seal per copy, a wrapped
key and a sealed map row; for a 4 KiB file or object that is most of the cost
of storing it. A bundle shares all of that among its members: each member then
costs a hash and a place in the bundle (``offset``). Used by trees for their
small files (engine/tree_input.py) and by batch stores for small objects
(``Node.store_many``).

Bundle ends fall after members chosen by a keyed hash of their content: the
same members give the same bundles (stored again, they dedup), an added or
changed member changes only the bundle around it, and, as with the chunker's
secret cut points, a provider cannot tell known content from bundle sizes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Member(Protocol):
    """What a bundle member is told: its size, SHA-256 (hex), where it starts in its
    bundle, and (``Bundle.place``) which of the block's chunks the bundle became."""

    size: int
    sha256: str
    offset: int
    first_chunk: int
    chunks: int


M = TypeVar("M", bound=Member)


@dataclass
class Bundle(Generic[M]):
    """Members laid end to end, to be stored as one chunk; ``members`` learn where
    that chunk is once it is written (``place``)."""

    data: bytes
    members: list[M]

    def place(self, first_chunk: int) -> None:
        for member in self.members:
            member.first_chunk, member.chunks = first_chunk, 1


@dataclass(frozen=True)
class BundleSizes:
    smallest: int  # a bundle ends only once it holds this much (the last one excepted)
    average: int  # about this much, on average
    largest: int  # never more: a member that would not fit starts the next one


class Bundler(Generic[M]):
    """Lays members into bundles of ``sizes``.

    After each member, the bundle ends with a probability of the member's size over
    ``average - smallest``, decided by a keyed hash of its content. Equal content is
    laid once: a later equal member is given the first one's place."""

    def __init__(self, cut_key: bytes, sizes: BundleSizes) -> None:
        self._cut_key = cut_key
        self._sizes = sizes
        self._data = bytearray()
        self._members: list[M] = []
        self._stored: dict[bytes, tuple[list[M], int]] = {}  # SHA-256: where it lies

    def add(self, member: M, data: bytes) -> Bundle[M] | None:
        """Give ``member`` its size, SHA-256 and offset; a bundle it completed, if any
        (the one before it when it would not fit)."""
        digest = hashlib.sha256(data).digest()
        member.size, member.sha256 = len(data), digest.hex()
        if not data:
            return None  # no chunk at all
        if digest in self._stored:  # equal content: the bytes stored once
            members, member.offset = self._stored[digest]
            members.append(member)
            return None
        done = self._cut() if len(self._data) + len(data) > self._sizes.largest else None
        member.offset = len(self._data)
        self._stored[digest] = (self._members, member.offset)
        self._data += data
        self._members.append(member)
        if len(self._data) >= self._sizes.smallest and self._ends_here(digest, len(data)):
            return self._cut()
        return done

    def close(self) -> Bundle[M] | None:
        """The last bundle, if any members are waiting."""
        return self._cut() if self._members else None

    def _ends_here(self, digest: bytes, size: int) -> bool:
        draw = hashlib.blake2b(digest, key=self._cut_key, digest_size=8).digest()
        spread = self._sizes.average - self._sizes.smallest
        return int.from_bytes(draw, "big") < (size << 64) // spread

    def _cut(self) -> Bundle[M]:
        bundle = Bundle(bytes(self._data), self._members)
        self._data, self._members = bytearray(), []
        return bundle
