"""The placement policy: distinct providers, Offline ones last, never an excluded one."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metanode_storage.blockmap.records import Replica
from metanode_storage.engine.placement import (
    PooledSystemRandom,
    providers_for_a_store,
    providers_for_copies,
    providers_for_repair,
    read_order,
)

_names = st.lists(st.sampled_from([f"p{i}" for i in range(10)]), unique=True, max_size=10)


@given(names=_names, offline=_names, limit=st.integers(1, 5))
def test_a_store_draws_distinct_providers_offline_ones_last(
    names: list[str], offline: list[str], limit: int
) -> None:
    candidates, last_resort = providers_for_a_store(names, offline.__contains__, limit)
    chosen = candidates + last_resort
    assert len(chosen) == len(set(chosen)) == min(limit, len(names))
    assert set(chosen) <= set(names)
    assert not set(candidates) & set(offline) and set(last_resort) <= set(offline)
    healthy = [n for n in names if n not in offline]
    assert len(candidates) == min(limit, len(healthy))  # Offline only when needed


@given(candidates=_names, last=_names, excluded=_names, wanted=st.integers(-2, 6))
def test_copies_go_to_providers_not_excluded_candidates_first(
    candidates: list[str], last: list[str], excluded: list[str], wanted: int
) -> None:
    last = [n for n in last if n not in candidates]
    chosen = providers_for_copies(candidates, last, set(excluded), wanted)
    assert len(chosen) == len(set(chosen)) <= max(0, wanted)
    assert not set(chosen) & set(excluded)
    firsts = [n for n in chosen if n in candidates]
    assert chosen[: len(firsts)] == firsts


@given(names=_names, holders=_names, offline=_names, bad=_names)
def test_repair_targets_are_healthy_non_holders_bad_ones_last(
    names: list[str], holders: list[str], offline: list[str], bad: list[str]
) -> None:
    targets = providers_for_repair(names, set(holders), offline.__contains__, set(), set(bad))
    assert set(targets) == {n for n in names if n not in holders and n not in offline}
    flags = [n in bad for n in targets]
    assert flags == sorted(flags)


def test_reads_try_offline_providers_and_backups_last() -> None:
    replicas = [Replica(f"p{i}", f"k{i}", 10) for i in range(6)]
    backup = Replica("b", "kb", 10)
    order = read_order(replicas, [backup], {"p0", "p3"}.__contains__)
    assert order[-1] == backup
    assert {r.provider for r in order[-3:-1]} == {"p0", "p3"}
    assert sorted(r.key for r in order[:-1]) == sorted(r.key for r in replicas)


def test_placement_draws_are_uniform_and_come_from_the_os() -> None:
    rng = PooledSystemRandom()
    counts = Counter(tuple(rng.sample(["a", "b", "c"], 3)) for _ in range(6000))
    assert len(counts) == 6  # every order of three providers
    assert all(800 < n < 1200 for n in counts.values()), counts  # 1,000 each expected
    assert all(0 <= rng.random() < 1 for _ in range(1000))
    assert {rng.getrandbits(3) for _ in range(1000)} == set(range(8))
    with pytest.raises(NotImplementedError):
        rng.getstate()


def test_a_forked_child_does_not_repeat_its_parents_draws() -> None:
    rng = PooledSystemRandom()
    rng.getrandbits(8)  # the pool is filled before the fork
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draws, to the parent
        os.write(writer, rng.getrandbits(128).to_bytes(16, "big"))
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    child = os.read(reader, 16)
    os.close(reader)
    assert len(child) == 16
    assert child != rng.getrandbits(128).to_bytes(16, "big")
