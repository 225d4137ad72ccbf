"""The placement policy: distinct providers, Offline ones last, never an excluded one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from metanode_storage.blockmap.records import Replica
from metanode_storage.engine.placement import (
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
