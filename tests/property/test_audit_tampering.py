"""Tamper with the audit trail in every way that matters; each is caught and named."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metanode_storage import Node, Secret
from metanode_storage.audit.drafts import Draft, EventDrafts, canonical
from metanode_storage.audit.merkle import leaf_hash
from metanode_storage.audit.trail import AuditTrail
from metanode_storage.crypto.signing import NodeSigner
from tests.conftest import PASSPHRASE

Tamper = Callable[[sqlite3.Connection], None]


def _trail_with_events(home: Path, count: int = 6) -> list[str]:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        ids = [node.store_bytes(os.urandom(1000)).block_id for _ in range(count)]
        node.retrieve_bytes(ids[0])
    return ids


def _verify(home: Path) -> list[str]:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        return node.audit.verify().problems


def _edit_body_keep_leaf(db: sqlite3.Connection) -> None:
    body = db.execute("SELECT body FROM events WHERE seq=2").fetchone()[0]
    db.execute("UPDATE events SET body=? WHERE seq=2", (body.replace(b'"ok"', b'"OK"'),))


def _edit_body_and_leaf(db: sqlite3.Connection) -> None:
    _rewrite(db, 2, _edit_detail)


def _delete_middle(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM events WHERE seq=3")
    db.execute("UPDATE events SET seq=seq-1 WHERE seq>3")


def _swap_two(db: sqlite3.Connection) -> None:
    rows = db.execute("SELECT seq, body, leaf FROM events WHERE seq IN (1, 2)").fetchall()
    for (seq, _, _), (_, body, leaf) in zip(rows, reversed(rows), strict=True):
        db.execute("UPDATE events SET body=?, leaf=? WHERE seq=?", (body, leaf, seq))


def _insert_copy(db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET seq=seq+1000 WHERE seq>=2")
    db.execute("UPDATE events SET seq=seq-999 WHERE seq>=1000")
    body, leaf = db.execute("SELECT body, leaf FROM events WHERE seq=1").fetchone()
    db.execute("INSERT INTO events VALUES (2, 0, 'store', '', 'ok', ?, ?)", (body, leaf))


def _nest_past_the_parser(db: sqlite3.Connection) -> None:
    """A body the JSON parser gives up on (RecursionError), its leaf redone."""
    body = b"[" * 100_000 + b"]" * 100_000
    db.execute("UPDATE events SET body=?, leaf=? WHERE seq=2", (body, leaf_hash(body)))


def _edit_indexed_column(db: sqlite3.Connection) -> None:
    db.execute("UPDATE events SET status='violation' WHERE seq=1")


def _alter_checkpoint(db: sqlite3.Connection) -> None:
    size, note = db.execute("SELECT size, note FROM checkpoints ORDER BY size LIMIT 1").fetchone()
    lines = note.split("\n")
    lines[2] = ("B" if lines[2][0] == "A" else "A") + lines[2][1:]  # the root hash
    db.execute("UPDATE checkpoints SET note=? WHERE size=?", ("\n".join(lines), size))


TAMPERINGS: dict[str, tuple[Tamper, str]] = {
    "edited body": (_edit_body_keep_leaf, "event #2: its body does not match its leaf hash"),
    "edited body and leaf": (_edit_body_and_leaf, "event #2: its signature does not verify"),
    "deleted event": (_delete_middle, "event #3: it says it is #4: an event before it was removed"),
    "reordered events": (_swap_two, "event #1: it says it is #2"),
    "inserted event": (_insert_copy, "event #2: it says it is #1: an event was inserted"),
    "edited query column": (_edit_indexed_column, "event #1: its indexed columns differ"),
    "body nested too deep": (_nest_past_the_parser, "event #2: its body is not an event"),
    "altered checkpoint": (_alter_checkpoint, "local checkpoint at size"),
}


@pytest.mark.parametrize("kind", sorted(TAMPERINGS))
def test_tampering_is_caught_and_named(home: Path, kind: str) -> None:
    _trail_with_events(home)
    assert _verify(home) == []
    tamper, expected = TAMPERINGS[kind]
    db = sqlite3.connect(home / "audit.sqlite")
    with db:
        tamper(db)
    db.close()
    problems = _verify(home)
    assert problems, kind
    assert expected in problems[0], problems[0]


def test_a_trail_cut_back_is_caught_by_the_checkpoints_on_the_providers(home: Path) -> None:
    _trail_with_events(home, count=5)
    db = sqlite3.connect(home / "audit.sqlite")
    with db:  # an attacker (or a restored old disk image) removes the newest events and
        # every local trace of them: events, checkpoints, frontier
        db.execute("DELETE FROM events WHERE seq >= 3")
        db.execute("DELETE FROM checkpoints WHERE size > 3")
        db.execute("DELETE FROM meta")
    db.close()
    problems = _verify(home)
    assert problems and "the trail was cut back" in problems[0]
    assert "provider local-" in problems[0]


def test_the_trail_holds_no_file_name_and_no_secret(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "merger-plans-confidential.pdf"
    source.write_bytes(os.urandom(5000))
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        node.retrieve_bytes(node.store_file(source).block_id)
        secrets = [
            node.keys.map_key.reveal().hex(),
            node.keys.dedup_key.reveal().hex(),
            node.keys.signing_keys[0].seed.reveal().hex(),
        ]
    raw = b"".join(p.read_bytes() for p in home.glob("audit.sqlite*"))
    assert b"merger-plans" not in raw
    assert PASSPHRASE.encode() not in raw
    for secret in secrets:
        assert secret.encode() not in raw


def test_retrieval_of_a_corrupt_replica_is_an_audited_violation(home: Path) -> None:
    from tests.conftest import blob_files

    ids = _trail_with_events(home, count=1)
    blob_files(home)[0].write_bytes(b"\x00" * 64)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        for _ in range(8):
            node.retrieve_bytes(ids[0])
        node.verify(ids[0])
        summary = node.audit.trail.summary()
    assert summary.integrity_violations >= 1
    assert summary.storage_operations == 1


def _group_of_events(home: Path, count: int = 5) -> list[int]:
    """Store ``count`` blocks as one batch; the sequence numbers of their events, the
    last of which alone carries a signature."""
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        node.store_many((f"o{i}", os.urandom(1000)) for i in range(count))
    db = sqlite3.connect(home / "audit.sqlite")
    rows = db.execute("SELECT seq, body FROM events WHERE type='store' ORDER BY seq").fetchall()
    db.close()
    group = [seq for seq, _ in rows[-count:]]
    signed = [seq for seq, body in rows[-count:] if "sig" in json.loads(body)]
    assert signed == group[-1:], "a batch's events carry one signature, on the last"
    return group


Change = Callable[[dict[str, Any]], object]


def _rewrite(db: sqlite3.Connection, seq: int, change: Change) -> None:
    """Edit event ``seq`` and redo its leaf hash (what an attacker can do without the key)."""
    doc = json.loads(db.execute("SELECT body FROM events WHERE seq=?", (seq,)).fetchone()[0])
    change(doc)
    new = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    db.execute("UPDATE events SET body=?, leaf=? WHERE seq=?", (new, leaf_hash(new), seq))


def _relink_from(db: sqlite3.Connection, seq: int) -> None:
    """Make every event after ``seq`` link to the one before it again, up to the end."""
    numbers = [
        n for (n,) in db.execute("SELECT seq FROM events WHERE seq > ? ORDER BY seq", (seq,))
    ]
    for number in numbers:
        (leaf,) = db.execute("SELECT leaf FROM events WHERE seq=?", (number - 1,)).fetchone()
        _rewrite(db, number, functools.partial(_link, previous=bytes(leaf).hex()))


def _link(doc: dict[str, Any], previous: str) -> None:
    doc["prev"] = previous


def _edit_detail(doc: dict[str, Any]) -> None:
    doc["detail"]["size"] = 1


def _edit_unsigned(db: sqlite3.Connection, group: list[int]) -> None:
    _rewrite(db, group[1], _edit_detail)


def _edit_unsigned_and_relink(db: sqlite3.Connection, group: list[int]) -> None:
    _rewrite(db, group[1], _edit_detail)
    _relink_from(db, group[1])


def _remove_signing_event(db: sqlite3.Connection, group: list[int]) -> None:
    db.execute("DELETE FROM events WHERE seq=?", (group[-1],))


def _strip_signature(db: sqlite3.Connection, group: list[int]) -> None:
    _rewrite(db, group[-1], lambda doc: doc.pop("sig"))


def _pass_as_version_1(db: sqlite3.Connection, group: list[int]) -> None:
    _rewrite(db, group[0], lambda doc: doc.update(v=1))
    _relink_from(db, group[0])


def _upper_case_signature(db: sqlite3.Connection, group: list[int]) -> None:
    """The same signature bytes in other hex: the body changes, the signature holds."""
    _rewrite(db, group[-1], lambda doc: doc.update(sig=doc["sig"].upper()))


GROUP_TAMPERINGS: dict[str, tuple[Callable[[sqlite3.Connection, list[int]], None], str]] = {
    "an unsigned event edited": (_edit_unsigned, "its link to the previous event is broken"),
    "an unsigned event edited, the links after it redone": (
        _edit_unsigned_and_relink,
        "its signature does not verify",
    ),
    "the signing event removed": (_remove_signing_event, "signed by no event after them"),
    "the signature stripped": (_strip_signature, "signed by no event after them"),
    "the signature rewritten in upper case": (_upper_case_signature, "not written as signed"),
    "an unsigned event passed off as version 1": (_pass_as_version_1, "is not a signed event"),
}


@pytest.mark.parametrize("kind", sorted(GROUP_TAMPERINGS))
def test_a_group_signed_once_is_still_caught_when_tampered(home: Path, kind: str) -> None:
    group = _group_of_events(home)
    assert _verify(home) == []
    tamper, expected = GROUP_TAMPERINGS[kind]
    db = sqlite3.connect(home / "audit.sqlite")
    with db:
        tamper(db, group)
        db.execute("DELETE FROM checkpoints")
    db.close()
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:  # the events alone show it:
        # no checkpoint, local or on a provider, is consulted
        problems = node.audit.trail.verify(node.keys.public_keys()).problems
    assert problems, kind
    assert expected in problems[0], problems[0]


_SIGNER = NodeSigner.generate(hybrid=False)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    groups=st.lists(st.integers(1, 6), min_size=1, max_size=5),
    victim=st.integers(0, 10_000),
    redo_leaf=st.booleans(),
    data=st.data(),
)
def test_any_edit_in_a_trail_of_groups_is_caught(
    tmp_path_factory: pytest.TempPathFactory,
    groups: list[int],
    victim: int,
    redo_leaf: bool,
    data: st.DataObject,
) -> None:
    """Groups of random sizes, each signed once on its last event; one byte of one event
    changed anywhere (its leaf hash redone or not): `verify` names a problem, from the
    events alone."""
    where = tmp_path_factory.mktemp("trail") / "audit.sqlite"
    trail = AuditTrail(where, "metanode/test", _SIGNER, create=True)
    for size in groups:
        trail.append_many([("store", f"block-{i}", "ok", {"size": i}) for i in range(size)])
    keys = {_SIGNER.key_id: _SIGNER.public}
    assert trail.verify(keys).ok
    trail.close()
    seq = victim % sum(groups)
    db = sqlite3.connect(where)
    with db:
        (body,) = db.execute("SELECT body FROM events WHERE seq=?", (seq,)).fetchone()
        at = data.draw(st.integers(0, len(body) - 1), label="byte")
        edited = body[:at] + bytes([body[at] ^ data.draw(st.integers(1, 255))]) + body[at + 1 :]
        leaf = leaf_hash(edited) if redo_leaf else None
        db.execute(
            "UPDATE events SET body=?, leaf=COALESCE(?, leaf) WHERE seq=?", (edited, leaf, seq)
        )
    db.close()
    reopened = AuditTrail(where, "metanode/test")
    try:
        assert not reopened.verify(keys).ok
    finally:
        reopened.close()


# Any JSON value a detail may hold, keys and text over all of Unicode but lone surrogates
# (which UTF-8 cannot carry, in either form).
_text = st.text(st.characters(exclude_categories=["Cs"]))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@given(
    now=st.integers(min_value=0, max_value=2**40),
    key_id=_text,
    fence=st.none() | st.integers(min_value=0, max_value=2**63),
    seq=st.integers(min_value=0, max_value=2**40),
    event_type=st.sampled_from(["store", "retrieve", "verify"]) | _text,
    block_id=_text,
    status=st.sampled_from(["ok", "violation"]) | _text,
    detail=st.none() | st.just({"faults": []}) | st.dictionaries(_text, _json_values, max_size=3),
    prev=st.just("") | st.binary(min_size=32, max_size=32).map(bytes.hex) | _text,
)
def test_drafted_event_bodies_are_the_canonical_json_they_are_signed_as(
    now: int,
    key_id: str,
    fence: int | None,
    seq: int,
    event_type: str,
    block_id: str,
    status: str,
    detail: dict[str, Any] | None,
    prev: str,
) -> None:
    # An auditor checks each signature against canonical(document): the formatted body
    # must be that byte for byte, or every grouped event would fail verification.
    drafts = EventDrafts(now, key_id, fence)
    event = Draft(seq, event_type, block_id, status, detail, prev)
    signed = drafts.signed(event)
    assert drafts.body(event) == canonical(signed)
    # and canonical() is still the form events written before were signed in
    written_before = json.dumps(signed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical(signed) == written_before.encode()
    assert json.loads(drafts.body(event)) == signed
