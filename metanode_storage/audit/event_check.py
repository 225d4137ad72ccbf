"""Checking one audit event as an auditor does (``AuditTrail.verify`` walks the trail),
and the key hand-over events whose hybrid half needs a check of its own."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from metanode_storage.audit.drafts import canonical
from metanode_storage.audit.merkle import leaf_hash
from metanode_storage.crypto.signing import PublicKey, verify_ml_dsa, verify_signature

KEY_HANDOVER, KEY_ACCEPTED = "key_rotation", "key_rotation_accepted"


def handover_statement(old_key_id: str, new_key_id: str, new_public_key: str) -> bytes:
    """What both keys of a rotation sign with ML-DSA-65 when they are hybrid: the old key
    hands over to the new one (``new_public_key`` in `keys show`'s text form)."""
    return canonical(
        {"old_key_id": old_key_id, "new_key_id": new_key_id, "new_public_key": new_public_key}
    )


def check_event(
    row: tuple[Any, ...], seq: int, last: str, public_keys: Mapping[str, PublicKey]
) -> tuple[str, bool]:
    """(what is wrong with the event, or "", and whether it carries a signature)."""
    stored_seq, stored_time, stored_type, stored_block, stored_status, body, leaf = row
    if stored_seq != seq:
        return (
            f"sequence number {stored_seq} where {seq} was expected (removed or reordered)",
            False,
        )
    if leaf_hash(body) != leaf:
        return "its body does not match its leaf hash (edited)", False
    try:
        doc = json.loads(body)
        written = doc.pop("sig") if "sig" in doc else None
        signature = None if written is None else bytes.fromhex(written)
        version = doc.get("v", 1)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return "its body is not an event (edited)", False
    if signature is not None and written != signature.hex():
        # the same signature in other hex (upper case): a body edited, signature intact
        return "its signature is not written as signed events write it (edited)", False
    if signature is None and (not isinstance(version, int) or version < 2):
        return "its body is not a signed event (edited)", False
    claimed = doc.get("seq")
    if not isinstance(claimed, int):
        return "its body has no sequence number (edited)", False
    if claimed > seq:
        return (
            f"it says it is #{claimed}: an event before it was removed, or events reordered",
            False,
        )
    if claimed < seq:
        return f"it says it is #{claimed}: an event was inserted, or events reordered", False
    if doc.get("prev") != last:
        return (
            "its link to the previous event is broken (an event edited, removed or inserted)",
            False,
        )
    public = public_keys.get(str(doc.get("key_id")))
    if public is None:
        return f"signed by unknown key {doc.get('key_id')}", False
    if signature is not None and not verify_signature(public.ed25519, canonical(doc), signature):
        return "its signature does not verify (edited)", False
    if doc.get("type") in (KEY_HANDOVER, KEY_ACCEPTED) and public.ml_dsa is not None:
        problem = _handover_problem(doc, public.ml_dsa)
        if problem:
            return problem, False
    # .get: an unsigned event's body is only vouched for by the links after it, so an
    # edit may have dropped a field by the time it gets here
    if tuple(map(doc.get, ("time", "type", "block_id", "status"))) != (
        stored_time,
        stored_type,
        stored_block,
        stored_status,
    ):
        return "its indexed columns differ from its signed body (edited)", False
    return "", signature is not None


def _handover_problem(doc: Mapping[str, Any], ml_dsa_key: bytes) -> str:
    """A hybrid key's hand-over (or acceptance) must carry its ML-DSA-65 signature."""
    missing = "the key hand-over lacks its ML-DSA-65 signature (a hybrid key signs both)"
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        return missing
    try:
        if doc["type"] == KEY_HANDOVER:
            ids = (detail["old_key_id"], detail["new_key_id"])
        else:
            ids = (detail["previous_key_id"], detail["key_id"])
        statement = handover_statement(*ids, detail["new_public_key"])
        signature = bytes.fromhex(detail["ml_dsa_signature"])
    except (KeyError, TypeError, ValueError):
        return missing
    if not verify_ml_dsa(ml_dsa_key, statement, signature):
        return "the key hand-over's ML-DSA-65 signature does not verify (edited)"
    return ""
