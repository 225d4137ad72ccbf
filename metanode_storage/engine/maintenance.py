"""Housekeeping on a node: map backups and garbage collection."""

from __future__ import annotations

import contextlib
from functools import partial
from typing import TYPE_CHECKING

from metanode_storage.audit.trail import FAILED, OK, REPAIR
from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.keystore import KeyMaterial
from metanode_storage.engine.backup import Locator, derive_locator
from metanode_storage.engine.backup_check import log_problem
from metanode_storage.engine.backup_log import BackupLog
from metanode_storage.engine.blobformat import is_own_blob_key
from metanode_storage.engine.keys import rewrite_keystore
from metanode_storage.errors import KeystoreError, NotEnoughProviders

if TYPE_CHECKING:
    from metanode_storage.engine.node import Node


def backup_locators(node: Node) -> dict[str, Locator]:
    """Where each provider's map backup lives; derived from the passphrase once per
    provider (a full-strength Argon2id run) and then kept in the keystore."""
    missing = [n for n in node.providers if n not in node.keys.backup_locators]
    if missing:
        if node.passphrase is None:
            raise KeystoreError("the map backup needs the node opened with its passphrase")
        found = {n: derive_locator(node.passphrase, n).to_hex() for n in missing}

        def remember(material: KeyMaterial) -> None:
            material.backup_locators.update({n: Secret(v.encode()) for n, v in found.items()})

        rewrite_keystore(node, remember)
    return {n: Locator.from_hex(v.reveal().decode()) for n, v in node.keys.backup_locators.items()}


def backup_log(node: Node, try_offline: bool = False) -> BackupLog:
    return BackupLog(
        node.layout,
        node.settings.node_id,
        node.providers,
        backup_locators(node),
        node.blockmap,
        node.audit.trail,
        node.io_pool,
        (lambda _: False) if try_offline else node.health.is_offline,
        node.backup_lock,
        node.backup_state_file,
        node.keys.recipients,
    )


def backup_map(node: Node, try_offline: bool = False) -> dict[str, str]:
    """Bring the map backup on every provider that answers up to date (two at least):
    a segment with what changed, or a snapshot where one is due. Providers known to be
    Offline are skipped, unless ``try_offline`` (an operator's explicit `backup-map`)."""
    return backup_log(node, try_offline).write()


NOT_WRITTEN = "not written anew yet (the next backup tries again)"


def check_map_backups(node: Node, deep: bool = False, dry_run: bool = False) -> dict[str, str]:
    """Per provider whose map backup log is no longer whole (engine/backup_check.py):
    what was wrong and what was done. Unless ``dry_run`` the broken logs are written
    anew at once, as fresh snapshots, and the outcome is recorded in the audit trail."""
    if not node.settings.backup_enabled:
        return {}
    try:
        backups = backup_log(node)
    except KeystoreError:  # no passphrase to derive a new provider's locator: nothing written
        return {}
    broken = backups.forget_broken(partial(log_problem, deep=deep), dry_run)
    if not broken or dry_run:
        return broken
    with contextlib.suppress(NotEnoughProviders):  # what each holds now is read back below
        backups.write()
    current = backups.state().logs
    found = {
        name: f"{problem}; {'written anew' if name in current else NOT_WRITTEN}"
        for name, problem in broken.items()
    }
    missed = any(name not in current for name in broken)
    node.audit.record(REPAIR, status=FAILED if missed else OK, detail={"map_backups": found})
    return found


def tail_marks(node: Node) -> dict[str, tuple[int, int]]:
    """Per provider, the (events, checkpoints) marks its map backup carries: a published
    checkpoint adds the audit rows beyond them."""
    if not node.settings.backup_enabled:
        return {}
    logs = node.backup_log_state().logs
    return {n: (log.events_mark, log.checkpoints_mark) for n, log in logs.items()}


def collect_garbage(node: Node, dry_run: bool = False) -> dict[str, int]:
    """Delete this node's blobs that no map row names (left by interrupted stores);
    count per provider.

    Only blobs whose name carries this node's ownership tag are candidates:
    a bucket or directory shared with other nodes (or holding anything else)
    keeps everything that is not provably ours. Holds the lock exclusively, so
    no store is between writing its blobs and committing its row while the
    providers are listed.
    """
    owner_key = node.keys.owner_key

    def ours(key: str) -> bool:
        return is_own_blob_key(owner_key, key)

    with node.lock.exclusive("collect garbage"):
        wanted: dict[str, set[str]] = {name: set() for name in node.providers}
        for record in node.blockmap.chunks():
            for replica in record.all_copies:
                wanted.setdefault(replica.provider, set()).add(replica.key)
        removed: dict[str, int] = {}
        for name, store in node.providers.items():
            orphans = [key for key in store.list_keys() if key not in wanted[name] and ours(key)]
            if not dry_run:
                for key in orphans:
                    store.delete(key)
                store.remove_partial_writes(ours)
            removed[name] = len(orphans)
        if not dry_run:
            node.audit.record("gc", detail={"orphans_deleted": removed})
        return removed
