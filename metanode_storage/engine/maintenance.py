"""Housekeeping on a node: map backups and garbage collection."""

from __future__ import annotations

from typing import TYPE_CHECKING

from metanode_storage.audit.trail import FAILED
from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.keystore import KeyMaterial, update_keystore
from metanode_storage.engine.backup import Locator, derive_locator, write_backup
from metanode_storage.engine.blobformat import is_own_blob_key
from metanode_storage.errors import KeystoreError, ProviderError

if TYPE_CHECKING:
    from metanode_storage.engine.node import Node


def backup_map(node: Node) -> dict[str, str]:
    """Write the sealed map backup to every provider that answers (two at least)."""
    missing = [n for n in node.providers if n not in node.keys.backup_locators]
    if missing:
        if node.passphrase is None:
            raise KeystoreError("the map backup needs the node opened with its passphrase")
        found = {n: derive_locator(node.passphrase, n).to_hex() for n in missing}

        def remember(material: KeyMaterial) -> None:
            material.backup_locators.update({n: Secret(v.encode()) for n, v in found.items()})

        node.reload_keys(update_keystore(node.layout.keystore, node.passphrase, remember))
    locators = {
        n: Locator.from_hex(v.reveal().decode()) for n, v in node.keys.backup_locators.items()
    }
    # Audit and checkpoint first, so the bundle carries the trail up to and including
    # the newest checkpoint that the providers hold.
    node.audit.record("map_backup", detail={"providers": sorted(locators)})
    node.audit.publish()
    try:
        outcome = write_backup(node.layout, node.settings.node_id, node.providers, locators)
    except ProviderError as exc:
        node.audit.record("map_backup", status=FAILED, detail={"error": exc.message})
        raise
    node.changed = False
    return outcome


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
