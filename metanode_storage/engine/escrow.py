"""Recovery without the passphrase: the node's keys escrowed to an offline X-Wing key.

Two things let a recovery identity (crypto/xwing.py) rebuild a node:

- the keystore carries a copy of the key material sealed to each recovery
  recipient, written with every keystore write (crypto/keystore.py), so the
  map backup, which carries the keystore, carries the copy too;
- each provider holds a **pointer**, sealed to each recipient, naming where
  that provider's map backup is (its locator, otherwise derived from the
  passphrase). Its blob name comes from the recipient and the provider's
  name, so the identity's holder finds it and no one else can link it to
  the node. The backup log writes it (engine/backup_log.py) the first time a
  provider's backup is current for a recipient.

`recover --identity` follows the pointer, restores the map backup, opens the
keystore copy and seals the material under a new passphrase. The lost
passphrase's locators are dropped, so the next backup writes fresh logs that
the new passphrase finds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.crypto.keystore import (
    KeyMaterial,
    keystore_header_params,
    open_keystore_with_identity,
    seal_keystore,
)
from metanode_storage.crypto.xwing import XWingIdentity, XWingRecipient
from metanode_storage.engine.backup import Locator
from metanode_storage.engine.keys import rewrite_keystore
from metanode_storage.engine.recovery_pointer import pointer_info, pointer_name
from metanode_storage.errors import (
    InputError,
    KeystoreDamaged,
    ObjectNotFound,
    ProviderError,
)
from metanode_storage.providers.base import BlobStore

if TYPE_CHECKING:
    from metanode_storage.engine.node import Node


@dataclass(frozen=True)
class Pointer:
    node_id: str
    locator: Locator


def find_backup(identity: XWingIdentity, provider: BlobStore) -> Pointer:
    """Where ``provider`` holds the node's map backup, from the pointer sealed to
    ``identity``."""
    try:
        sealed = provider.get(pointer_name(identity.recipient, provider.name))
    except ObjectNotFound:
        raise ObjectNotFound(
            provider.name,
            "holds no recovery pointer for this identity and provider name",
            "check that --name is the provider's name in the lost node, and that the node "
            "had `keys escrow --to` this identity's recipient and a map backup after it",
        ) from None
    plain = identity.open(sealed, pointer_info(provider.name))
    try:
        doc = json.loads(plain)
        if doc.get("v") != 1 or doc.get("provider") != provider.name:
            raise ValueError("not a pointer for this provider")
        return Pointer(str(doc["node_id"]), Locator.from_hex(str(doc["locator"])))
    except (ValueError, KeyError, TypeError):
        raise KeystoreDamaged(f"the recovery pointer on {provider.name} is damaged") from None


def reseal_for_new_passphrase(raw: bytes, identity: XWingIdentity, passphrase: Secret) -> bytes:
    """A restored keystore's bytes, opened with the identity and sealed under
    ``passphrase`` (same KDF cost, fresh salt). Locators came from the old passphrase:
    they are dropped, and the first backup derives them from the new one."""
    material = open_keystore_with_identity(raw, identity, "the recovered keystore")
    material.backup_locators = {}
    cost = keystore_header_params(raw, "the recovered keystore")
    fresh = KdfParams.fresh(cost.iterations, cost.memory_kib, cost.lanes)
    return seal_keystore(material, passphrase, fresh)


@dataclass(frozen=True)
class Escrowed:
    recipient: str  # the fingerprint
    added: bool  # False: the node had it already
    backups: dict[str, str]  # per provider: "ok" once its pointer and keystore copy are there


def escrow_to(node: Node, text: str) -> Escrowed:
    """Make ``text``'s recipient a recovery recipient of the node: the keystore gains a
    copy sealed to it, and a map backup brings every provider its pointer."""
    recipient = XWingRecipient.parse(text)
    added = False

    def add(material: KeyMaterial) -> None:
        nonlocal added
        if recipient.fingerprint not in {r.fingerprint for r in material.recipients}:
            material.recovery_recipients.append(recipient.text())
            added = True

    rewrite_keystore(node, add)
    if added:
        node.audit.record("key_escrow", detail={"recipient": recipient.fingerprint})
    return Escrowed(recipient.fingerprint, added, node.backup_map())


@dataclass(frozen=True)
class Revoked:
    recipient: str  # the fingerprint
    pointers: dict[str, str]  # per provider: "deleted", or why not
    backups: dict[str, str]  # per provider: "ok" once a fresh log replaced the old one


def revoke(node: Node, fingerprint: str) -> Revoked:
    """Stop escrowing to a recipient: the keystore drops its copy, every provider's pointer
    to it is deleted, and every provider's map backup is replaced by a fresh snapshot (the
    old one, which carries the old keystore, is deleted), so its identity no longer
    recovers the node from what the providers hold."""
    gone: list[XWingRecipient] = []

    def drop(material: KeyMaterial) -> None:
        kept = [r for r in material.recipients if r.fingerprint != fingerprint]
        gone.extend(r for r in material.recipients if r.fingerprint == fingerprint)
        material.recovery_recipients = [r.text() for r in kept]

    rewrite_keystore(node, drop)
    if not gone:
        raise InputError(
            f"{fingerprint!r} is not a recovery recipient of this node",
            "`keys show` lists them",
        )
    pointers: dict[str, str] = {}
    for name, store in node.providers.items():
        try:
            store.delete(pointer_name(gone[0], name))
            pointers[name] = "deleted"
        except ProviderError as exc:
            pointers[name] = exc.message
    with node.backup_lock.exclusive("replace the map backups"):
        state = node.backup_log_state()
        for log in state.logs.values():
            log.replace = True
        for name in state.pointers:
            state.pointers[name] = [f for f in state.pointers[name] if f != fingerprint]
        state.save(node.backup_state_file)
    node.audit.record("key_escrow_revoked", detail={"recipient": fingerprint})
    return Revoked(fingerprint, pointers, node.backup_map())
