"""The node's side of the audit trail: recording events, and keeping signed checkpoints
on the providers so that a local trail rolled back to an earlier state is caught."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from metanode_storage.audit.trail import OK, AuditTrail, TrailVerification
from metanode_storage.crypto import aead
from metanode_storage.crypto.keystore import KeyMaterial
from metanode_storage.errors import ObjectNotFound, ProviderError
from metanode_storage.providers.base import BlobStore

_CHECKPOINT_AAD = b"metanode audit checkpoint v1"


def checkpoint_blob_key(keys: KeyMaterial, provider: str) -> str:
    """Where on a provider the sealed checkpoint lives: a name derived from the node's name
    key and the provider's name, so it looks like any other blob, differs from provider to
    provider (nothing links them), and only this node can find it."""
    return aead.keyed_hash(keys.name_key.reveal(), b"audit-checkpoint", provider.encode())[
        :16
    ].hex()


class NodeAudit:
    def __init__(
        self,
        trail: AuditTrail,
        providers: Mapping[str, BlobStore],
        keys: KeyMaterial,
        enabled: bool,
    ) -> None:
        self.trail = trail
        self._providers = providers
        self._keys = keys
        self.enabled = enabled
        self.recorded = 0  # events since the last checkpoint was published
        self.checkpoint_keys = {name: checkpoint_blob_key(keys, name) for name in providers}
        self._seal_key = aead.keyed_hash(keys.map_key.reveal(), b"audit checkpoint seal")

    def record(
        self,
        event_type: str,
        block_id: str = "",
        status: str = OK,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        if self.enabled:
            self.trail.append(event_type, block_id, status, detail)
            self.recorded += 1

    def close(self) -> None:
        """Checkpoint what this run recorded and publish it to the providers."""
        if self.enabled and self.recorded:
            self.publish()
        self.trail.close()

    def publish(self) -> dict[str, str]:
        """Sign a checkpoint and write it, sealed, to every provider that answers.

        A provider that is down just misses this checkpoint; the next one
        supersedes it. Returns what happened per provider.
        """
        note = self.trail.checkpoint()
        self.recorded = 0
        sealed = aead.seal(self._seal_key, note.encode(), _CHECKPOINT_AAD)
        outcome: dict[str, str] = {}
        for name, store in self._providers.items():
            try:
                store.put(self.checkpoint_keys[name], sealed)
                outcome[name] = "ok"
            except ProviderError as exc:
                outcome[name] = exc.message
        return outcome

    def remote_notes(self) -> list[tuple[str, str]]:
        """(provider, checkpoint note) from every provider that holds one."""
        notes = []
        for name, store in self._providers.items():
            with contextlib.suppress(ObjectNotFound, ProviderError):
                sealed = store.get(self.checkpoint_keys[name])
                try:
                    note = aead.open_sealed(self._seal_key, sealed, _CHECKPOINT_AAD).decode()
                except (aead.OpenFailed, UnicodeDecodeError):
                    note = "(sealed checkpoint does not open)"
                notes.append((f"provider {name}", note))
        return notes

    def verify(self) -> TrailVerification:
        return self.trail.verify(self._keys.public_keys(), self.remote_notes())
