"""Key rotation: the node's signing key, and the data keys that wrap chunk keys.

Signing key: the old key signs the hand-over (an audit event naming the new
public key), the keystore then retires it and adds the new one, and the new
key signs its acceptance. Retired keys stay in the keystore as public
halves to check, so proofs and events made under them still verify.

Data key: a new key becomes current and every chunk's own key is re-wrapped
under it, in the map only. Nothing is re-uploaded: blobs are sealed under
per-chunk keys, which do not change. (If a chunk key itself were exposed,
only re-sealing the blobs would help; that is not what this does.) A run cut
short leaves some chunks under the old key, which stays in the keystore
until a later run finishes the job.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from metanode_storage.audit.event_check import KEY_ACCEPTED, KEY_HANDOVER, handover_statement
from metanode_storage.blockmap.records import ChunkRecord
from metanode_storage.config.secrets import Secret
from metanode_storage.crypto import aead
from metanode_storage.crypto.keystore import DataKey, KeyMaterial, SigningKeyRecord, update_keystore
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.chunk_keys import unwrap_chunk_key, wrap_chunk_key
from metanode_storage.engine.shared_home import KEYSTORE, sync_file
from metanode_storage.errors import KeystoreError

if TYPE_CHECKING:
    from metanode_storage.engine.node import Node

_BATCH = 500


@dataclass(frozen=True)
class SigningRotation:
    old_key_id: str
    new_key_id: str
    new_public_key: str  # `keys show`'s text form: Ed25519, and ML-DSA-65 when hybrid
    hybrid: bool


@dataclass(frozen=True)
class DataKeyRotation:
    new_key_id: str
    rewrapped: int
    reuploaded: int  # always 0: see the module's note
    retired_key_ids: list[str]


def rewrite_keystore(node: Node, change: Callable[[KeyMaterial], None]) -> KeyMaterial:
    """Change the keystore on disk (under its lock) and use the result from now on. On a
    node with a shared map, the change starts from the newest keystore any host gave and
    is given back at once, so no host's key is lost to another's stale copy."""
    if node.shared is not None:
        sync_file(node.layout, node.shared, KEYSTORE, sealed=False)
    keys = update_keystore(node.layout.keystore, keystore_passphrase(node), change)
    if node.shared is not None:
        sync_file(node.layout, node.shared, KEYSTORE, sealed=False)
    node.reload_keys(keys)
    return keys


def keystore_passphrase(node: Node) -> Secret:
    if node.passphrase is None:
        raise KeystoreError("the keystore cannot be rewritten: open the node with its passphrase")
    return node.passphrase


def rotate_signing_key(node: Node, post_quantum: bool = False) -> SigningRotation:
    """A new signing key: hybrid (Ed25519 + ML-DSA-65) if the old one was or
    ``post_quantum`` asks for it. The old key signs the hand-over, the new one its
    acceptance; a hybrid key signs its side with ML-DSA-65 too."""
    with node.lock.exclusive("rotate the signing key"):
        old = node.keys.signer
        new = NodeSigner.generate(hybrid=post_quantum or old.hybrid)
        statement = handover_statement(old.key_id, new.key_id, new.public.text())
        node.audit.trail.append(
            KEY_HANDOVER,
            detail={
                "old_key_id": old.key_id,
                "new_key_id": new.key_id,
                "new_public_key": new.public.text(),
                "signed_by": "old",
                **_ml_dsa_signature(old, statement),
            },
        )

        def hand_over(material: KeyMaterial) -> None:
            now = int(time.time())
            material.signing_keys[:] = [
                k if k.retired_at is not None else replace(k, retired_at=now)
                for k in material.signing_keys
            ] + [SigningKeyRecord.of(new, now)]

        rewrite_keystore(node, hand_over)
        node.audit.record(
            KEY_ACCEPTED,
            detail={
                "key_id": new.key_id,
                "previous_key_id": old.key_id,
                "new_public_key": new.public.text(),
                **_ml_dsa_signature(new, statement),
            },
        )
        return SigningRotation(old.key_id, new.key_id, new.public.text(), new.hybrid)


def _ml_dsa_signature(signer: NodeSigner, statement: bytes) -> dict[str, str]:
    signature = signer.sign_ml_dsa(statement)
    return {} if signature is None else {"ml_dsa_signature": signature.hex()}


def rotate_data_key(
    node: Node, progress: Callable[[int], None] = lambda _: None
) -> DataKeyRotation:
    with node.lock.exclusive("rotate the data key"):
        new = DataKey(os.urandom(8).hex(), Secret(aead.new_key()), int(time.time()))

        def add_key(material: KeyMaterial) -> None:
            material.data_keys.append(new)
            material.current_data_key = new.key_id

        keys = rewrite_keystore(node, add_key)
        by_id = {k.key_id: k.key.reveal() for k in keys.data_keys}
        batch: list[ChunkRecord] = []
        rewrapped = 0
        for record in node.blockmap.chunks():
            if record.data_key_id == new.key_id:
                continue
            batch.append(_rewrap(record, by_id, new))
            if len(batch) >= _BATCH:
                node.blockmap.replace_chunks(batch)
                rewrapped += len(batch)
                progress(len(batch))
                batch = []
        node.blockmap.replace_chunks(batch)
        rewrapped += len(batch)
        progress(len(batch))
        retired = [k.key_id for k in keys.data_keys if k.key_id != new.key_id]

        def drop_old(material: KeyMaterial) -> None:
            material.data_keys[:] = [k for k in material.data_keys if k.key_id == new.key_id]

        rewrite_keystore(node, drop_old)
        node.audit.record(
            "data_key_rotation",
            detail={
                "new_key_id": new.key_id,
                "rewrapped": rewrapped,
                "reuploaded": 0,
                "retired": retired,
            },
        )
        return DataKeyRotation(new.key_id, rewrapped, 0, retired)


def _rewrap(record: ChunkRecord, keys: dict[str, bytes], new: DataKey) -> ChunkRecord:
    chunk_key = unwrap_chunk_key(keys, record)
    wrapped = wrap_chunk_key(new.key.reveal(), new.key_id, record.chunk_id, chunk_key)
    return replace(record, data_key_id=new.key_id, wrapped_key=wrapped)


def rotate_api_token(node: Node) -> str:
    """A new bearer token for the service, kept in the keystore; returns it."""
    token = secrets.token_urlsafe(32)

    def replace_token(material: KeyMaterial) -> None:
        material.api_token = Secret(token.encode())

    rewrite_keystore(node, replace_token)
    node.audit.record("token_rotation")
    return token
