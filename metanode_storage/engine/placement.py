"""Where copies go and where reads look first: the placement policy, in one place.

Stores spread copies over distinct providers drawn at random (a provider cannot tell
from the pattern which of its blobs belong together), hold back providers known to be
Offline as a last resort, and never put two copies of a chunk on one provider. Reads
spread their load the same way and try Offline providers and backup locations last.
Randomness comes from the OS (SystemRandom): placement must not be predictable.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence

from metanode_storage.blockmap.records import Replica

_rng = random.SystemRandom()

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


def read_order(
    replicas: Sequence[Replica], backups: Sequence[Replica], is_offline: IsOffline
) -> list[Replica]:
    """Replicas in random order (spreading load), those on Offline providers after the
    rest, then backup locations."""
    order = list(replicas)
    _rng.shuffle(order)
    order.sort(key=lambda r: is_offline(r.provider))
    return order + list(backups)
