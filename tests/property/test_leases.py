"""The lease table against a model: any order of takes and releases keeps an exclusive
lease alone, and fencing tokens only grow."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metanode_storage.blockmap.leases import EXCLUSIVE, SHARED, LeaseTable, fence_holds

_OPS = st.lists(
    st.tuples(st.sampled_from(["take", "release"]), st.sampled_from([SHARED, EXCLUSIVE])),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops=_OPS)
def test_leases_follow_the_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, str]]
) -> None:
    table = LeaseTable(tmp_path_factory.mktemp("leases") / "map.sqlite", create=True)
    held: dict[int, str] = {}  # token -> mode: the model
    last_token = 0
    try:
        for op, mode in ops:
            if op == "release":
                if held:
                    token = min(held)
                    table.release(token)
                    del held[token]
                continue
            expected = not held if mode == EXCLUSIVE else EXCLUSIVE not in held.values()
            lease, stale, waiter = table.try_acquire("blocks", mode, "test", 60.0, None)
            assert stale == []
            assert (lease is not None) == expected
            if lease is None:
                assert (waiter is not None) == (mode == EXCLUSIVE)
                if waiter is not None:
                    assert waiter > last_token
                    last_token = waiter
                    table.release(waiter)  # gives up: no waiter left behind
                continue
            assert lease.token > last_token
            last_token = lease.token
            held[lease.token] = mode
            assert {x.token: x.mode for x in table.leases()} == held
        with table._db.transaction() as db:
            assert all(fence_holds(db, token) for token in held)
            assert not fence_holds(db, last_token + 1)
    finally:
        table.close()
