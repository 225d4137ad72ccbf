"""Checking that each provider still holds the map backup log this node wrote there.

``backup-state.json`` records what the node wrote to each provider; nothing in it
notices a provider losing or damaging a piece later. A log with a gap cannot be
recovered from, yet `status` went on counting it as current. The check reads each
provider's head (one small GET: it must open and name the snapshot and segments the
node wrote) and asks for every part and segment: by size, or with ``deep`` by
downloading and opening each one (its AES-GCM tag and position), which reads the
whole backup. The recovery pointers the node wrote there (`keys escrow`) must be there
too. A log found broken is forgotten, so the next backup writes that provider a fresh
snapshot and its pointers (engine/backup_log.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from metanode_storage.crypto import aead
from metanode_storage.engine.backup import Locator
from metanode_storage.engine.backup_log import HEAD_AAD, ProviderLog, log_pieces, position
from metanode_storage.errors import ObjectNotFound
from metanode_storage.providers.base import BlobStore


def log_problem(
    store: BlobStore,
    locator: Locator,
    log: ProviderLog,
    pointers: Sequence[str],
    deep: bool,
) -> str:
    """What is wrong with the provider's copy of ``log``, or with the recovery pointers
    (blob names) that lead to it ("" when all is whole). A provider that cannot be
    reached raises its ProviderError: that is an outage, not a broken log."""
    for name in pointers:  # without one, `recover --identity` finds nothing there
        try:
            store.size(name)
        except ObjectNotFound:
            return "a recovery pointer to it is missing"
    key = locator.seal_key.reveal()
    try:
        head = json.loads(aead.open_sealed(key, store.get(locator.blob_key), HEAD_AAD))
    except ObjectNotFound:
        return "its head is missing"
    except (aead.OpenFailed, ValueError):
        return "its head does not open"
    snapshot = head.get("snapshot") if isinstance(head, dict) else None
    if not isinstance(snapshot, dict) or (snapshot.get("id"), head.get("segments")) != (
        log.snapshot_id,
        log.segments,
    ):
        return "its head names another log than the one this node wrote"
    for kind, aad, index, name in log_pieces(locator, log):
        try:
            if deep:
                aead.open_sealed(key, store.get(name), position(aad, log.snapshot_id, index))
            else:
                store.size(name)
        except ObjectNotFound:
            return f"its {kind} {index} is missing"
        except aead.OpenFailed:
            return f"its {kind} {index} does not open"
    return ""
