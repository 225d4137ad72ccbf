"""The signed byte form of audit events, and a fast way to write it for a group.

An event is signed as canonical JSON (sorted keys, no spaces, UTF-8). ``json.dumps``
with ``sort_keys`` took a third of a batch's cost per event, so ``EventDrafts`` formats
the bodies of one group's events in place: the group's time, key and fence once, each
event's own fields as ``json.dumps`` writes them. A field of an unexpected type takes
``canonical`` itself, so the bytes are the same either way
(tests/property/test_audit_tampering.py checks that they are).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

# Version 2: an event appended with others may carry no signature of its own; the last
# event of its group signs it through the chain of "prev" links (docs/AUDIT.md).
EVENT_VERSION = 2
# made once: json.dumps with any option builds a new encoder per call
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_quote = json.encoder.encode_basestring  # json.dumps' form of a str with ensure_ascii=False
_NO_FAULTS: Mapping[str, Any] = {"faults": []}  # the detail of most retrieves
_NO_FAULTS_TEXT = '{"faults":[]}'


def canonical(document: Mapping[str, Any]) -> bytes:
    """The one byte form that is signed: sorted keys, no spaces, UTF-8."""
    return _CANONICAL.encode(document).encode()


class Draft(NamedTuple):
    """One event of a group, before it is signed."""

    seq: int
    event_type: str
    block_id: str
    status: str
    detail: Mapping[str, Any] | None
    prev: str  # the leaf hash of the event before it, hex


class EventDrafts:
    """The unsigned events of one group: same time, signing key and QLOCK fence."""

    def __init__(self, now: int, key_id: str, fence: int | None) -> None:
        self._shared: dict[str, Any] = {"v": EVENT_VERSION, "time": now, "key_id": key_id}
        if fence is not None:
            self._shared["fence"] = fence
        self._formatted = (
            type(now) is int and type(key_id) is str and (fence is None or type(fence) is int)
        )
        # the canonical key order: block_id, detail, fence, key_id, prev, seq, status,
        # time, type, v
        fenced = "" if fence is None else f'"fence":{fence},'
        self._before_prev = f'{fenced}"key_id":{_quote(key_id)},"prev":'
        self._after_status = f',"time":{now},"type":'
        self._end = f',"v":{EVENT_VERSION}}}'

    def signed(self, event: Draft) -> dict[str, Any]:
        """The event as a document: what its signature (if it gets one) signs."""
        return {
            **self._shared,
            "seq": event.seq,
            "type": event.event_type,
            "block_id": event.block_id,
            "status": event.status,
            "detail": dict(event.detail or {}),
            "prev": event.prev,
        }

    def body(self, event: Draft) -> bytes:
        """``canonical(self.signed(event))``, formatted in place."""
        seq, event_type, block_id, status, detail, prev = event
        if not (
            self._formatted
            and type(seq) is int
            and type(event_type) is str
            and type(block_id) is str
            and type(status) is str
            and type(prev) is str
        ):
            return canonical(self.signed(event))
        if detail == _NO_FAULTS:
            detail_text = _NO_FAULTS_TEXT
        else:
            detail_text = canonical(dict(detail or {})).decode()
        return "".join(
            (
                '{"block_id":',
                _quote(block_id),
                ',"detail":',
                detail_text,
                ",",
                self._before_prev,
                _quote(prev),
                ',"seq":',
                str(seq),
                ',"status":',
                _quote(status),
                self._after_status,
                _quote(event_type),
                self._end,
            )
        ).encode()
