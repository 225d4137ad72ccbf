"""Where copies go and where reads look first: the placement policy, in one place.

Stores spread copies over distinct providers drawn at random (a provider cannot tell
from the pattern which of its blobs belong together), hold back providers known to be
Offline as a last resort, and never put two copies of a chunk on one provider. Reads
spread their load the same way and try Offline providers and backup locations last.
Randomness comes from the OS (os.urandom, as SystemRandom's): placement must not be
predictable.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable, Collection, Sequence
from typing import NoReturn

from metanode_storage.blockmap.records import Replica


class PooledSystemRandom(random.Random):
    """SystemRandom's source, os.urandom, read 4 KiB at a time: SystemRandom makes a
    system call per draw, two per chunk placed, which cost a tree of 20,000 small files
    a tenth of its store time. Each byte is used once; a forked child starts a pool of
    its own."""

    _POOL = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._used = 0
        super().__init__()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._pool, self._used = b"", 0

    def seed(self, *args: object, **kwargs: object) -> None:
        """Nothing to seed: every draw comes from the OS."""

    def getstate(self) -> NoReturn:
        raise NotImplementedError("the OS's randomness has no state to save")

    def setstate(self, state: object) -> NoReturn:
        raise NotImplementedError("the OS's randomness has no state to restore")

    def _take(self, count: int) -> bytes:
        with self._lock:
            if self._used + count > len(self._pool):
                self._pool, self._used = os.urandom(max(self._POOL, count)), 0
            taken = self._pool[self._used : self._used + count]
            self._used += count
            return taken

    def getrandbits(self, k: int) -> int:
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        size = (k + 7) // 8
        return int.from_bytes(self._take(size), "big") >> (size * 8 - k)

    def random(self) -> float:
        return (int.from_bytes(self._take(7), "big") >> 3) * 2.0**-53


_rng = PooledSystemRandom()

IsOffline = Callable[[str], bool]


def providers_for_a_store(
    names: Sequence[str], is_offline: IsOffline, limit: int
) -> tuple[list[str], list[str]]:
    """(candidates, last resorts) for one store: at most ``limit`` providers drawn at
    random, those known Offline only if too few others are left, and last of all."""
    shuffled = _rng.sample(list(names), len(names))
    chosen = sorted(shuffled, key=is_offline)[:limit]  # stable: random within each group
    candidates = [n for n in chosen if not is_offline(n)]
    return candidates, [n for n in chosen if n not in candidates]


def providers_for_copies(
    candidates: Sequence[str],
    last_resort: Sequence[str],
    excluded: Collection[str],
    wanted: int,
) -> list[str]:
    """Up to ``wanted`` providers for new copies of one chunk: candidates in random
    order, then last resorts, none of them in ``excluded`` (failed, or holding it)."""
    order = [p for p in candidates if p not in excluded]
    _rng.shuffle(order)
    order += [p for p in last_resort if p not in excluded]
    return order[: max(0, wanted)]


def providers_for_repair(
    names: Sequence[str],
    holders: Collection[str],
    is_offline: IsOffline,
    unusable: Collection[str],
    had_bad_copy: Collection[str],
) -> list[str]:
    """Healthy providers that do not hold the chunk, those with a bad copy of it last."""
    targets = [n for n in names if n not in holders and not is_offline(n) and n not in unusable]
    return sorted(targets, key=lambda n: n in had_bad_copy)


def batch_rank(providers: Collection[str]) -> dict[str, int]:
    """One random order of ``providers`` for a whole batch of reads (name -> rank): chunks
    written together are then read from the same packs, and batches still spread load."""
    order = sorted(providers)
    _rng.shuffle(order)
    return {name: i for i, name in enumerate(order)}


def read_order(
    replicas: Sequence[Replica], backups: Sequence[Replica], is_offline: IsOffline
) -> list[Replica]:
    """Replicas in random order (spreading load), those on Offline providers after the
    rest, then backup locations."""
    order = list(replicas)
    _rng.shuffle(order)
    order.sort(key=lambda r: is_offline(r.provider))
    return order + list(backups)
