"""The node's side of the audit trail: recording events, and keeping signed checkpoints
on the providers so that a local trail rolled back to an earlier state is caught."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from metanode_storage.audit.note import Checkpoint, NoteInvalid, open_note
from metanode_storage.audit.trail import OK, AuditTrail, NewEvent, TrailVerification
from metanode_storage.crypto import aead
from metanode_storage.crypto.keystore import KeyMaterial
from metanode_storage.errors import IntegrityError, ObjectNotFound, ProviderError
from metanode_storage.jsonbytes import decode, encode
from metanode_storage.providers.base import BlobStore

_CHECKPOINT_AAD_V1 = b"metanode audit checkpoint v1"
_CHECKPOINT_AAD = b"metanode audit checkpoint v2"
log = logging.getLogger("metanode.audit")
CUT_ACKNOWLEDGED = "cut_acknowledged"
_DAMAGED = (
    "the checkpoint blob does not open (damaged on the provider); the next command that "
    "records an event writes a new one"
)


class TrailCut(IntegrityError):
    """The local trail does not extend a checkpoint the providers hold (exit 10)."""

    reference = "MN-503"


def checkpoint_blob_key(keys: KeyMaterial, provider: str) -> str:
    """Where on a provider the sealed checkpoint lives: a name derived from the node's name
    key and the provider's name, so it looks like any other blob, differs from provider to
    provider (nothing links them), and only this node can find it."""
    return aead.keyed_hash(keys.name_key.reveal(), b"audit-checkpoint", provider.encode())[
        :16
    ].hex()


@dataclass(frozen=True)
class RemoteCheckpoint:
    note: str
    tail: dict[str, list[list[Any]]]  # audit rows no map backup on that provider holds yet
    # The blob does not open under this node's seal key, which never changes: this node
    # never wrote it as it is, so it is a damaged blob, not a checkpoint, and no evidence
    # of a cut (a provider that deletes the blob shows as much). It is reported, and the
    # next publication replaces it; one rotten blob must not stop the node.
    damaged: bool = False


class NodeAudit:
    """Records events, and publishes signed checkpoints to the providers.

    The publishing rule (docs/AUDIT.md): at most once per command (at close, and only
    when it recorded events), to every provider not known to be Offline, in parallel;
    never over a checkpoint the local trail does not extend (a larger one, or one whose
    root differs): that one is evidence of a rolled-back or lost trail and stays.
    Each checkpoint blob also carries the events since that provider's last map
    backup segment, so a recovered node's trail reaches the checkpoint.
    """

    def __init__(
        self,
        trail: AuditTrail,
        providers: Mapping[str, BlobStore],
        keys: KeyMaterial,
        enabled: bool,
        io_pool: Executor | None = None,
        is_offline: Callable[[str], bool] = lambda _: False,
    ) -> None:
        self.trail = trail
        self._providers = providers
        self._keys = keys
        self.enabled = enabled
        self._io = io_pool
        self._is_offline = is_offline
        self.recorded = 0  # events since the last checkpoint was published
        self._checked = False  # the trail was found to extend the providers' checkpoints
        self.checkpoint_keys = {name: checkpoint_blob_key(keys, name) for name in providers}
        self._seal_key = aead.keyed_hash(keys.map_key.reveal(), b"audit checkpoint seal")

    # Set by the node: reads the keystore again and uses its keys; False if it has no
    # keys this run did not know.
    reread_keys: Callable[[], bool] | None = None

    def use_keys(self, keys: KeyMaterial) -> None:
        """After a key rotation: sign with the new key, trust every key the keystore holds."""
        self._keys = keys
        self.trail.use_signer(keys.signer)

    def record(
        self,
        event_type: str,
        block_id: str = "",
        status: str = OK,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        self.record_many([(event_type, block_id, status, detail)])

    @contextmanager
    def in_groups(self, size: int = 256) -> Iterator[Callable[[NewEvent], None]]:
        """For a long run of many events (verifying every block): events given to the
        yielded function are appended ``size`` at a time, one transaction (one fsync)
        each, and the rest on the way out, an error included. A durable transaction per
        event cost more than verifying a block of a batch's bundle; a process killed
        mid-run loses at most the events of its last group, of blocks whose faults
        are in the map already."""
        pending: list[NewEvent] = []

        def add(event: NewEvent) -> None:
            pending.append(event)
            if len(pending) >= size:
                self.record_many(pending)
                pending.clear()

        try:
            yield add
        finally:
            self.record_many(pending)

    def record_many(self, events: Sequence[NewEvent]) -> None:
        """Several events in one transaction (one fsync)."""
        if self.enabled and events:
            self.ensure_extends_providers()
            self.trail.append_many(events)
            self.recorded += len(events)

    def ensure_extends_providers(self) -> None:
        """Refuse to add to a trail that does not extend the newest checkpoint a provider
        holds (rolled back, or replaced): adding to it, and publishing, would bury the
        evidence. Checked once per run, against every provider not known Offline, in
        parallel; an operator lifts it with `audit acknowledge-cut`, which is recorded."""
        if self._checked:
            return
        cuts = self.unacknowledged_cuts()
        if cuts:
            name, problem = cuts[0]
            raise TrailCut(
                f"the audit trail does not extend the checkpoint on provider {name}: {problem}",
                "investigate, then record that you did with "
                "`metanode storage audit acknowledge-cut`",
            )
        self._checked = True

    def unacknowledged_cuts(self) -> list[tuple[str, str]]:
        """(provider, what is wrong) for every provider checkpoint the trail does not extend
        and no `acknowledge-cut` event has accepted."""
        return [(name, problem) for name, problem, _ in self._cuts()]

    def _cuts(self) -> list[tuple[str, str, str]]:
        """(provider, what is wrong, its checkpoint note) for each unacknowledged cut."""
        names = [n for n in self._providers if not self._is_offline(n)]
        found = self._map(lambda n: self._read(self._providers[n], n), names)
        # The local trail is read after the providers: a checkpoint another run published
        # meanwhile covers events already in the trail, never the other way round (read
        # first, a concurrent run's append and publish looked like a rollback).
        mine = self._current()
        acknowledged = self._acknowledged()
        cuts = []
        for name, remote in zip(names, found, strict=True):
            if isinstance(remote, RemoteCheckpoint) and remote.damaged:
                log.warning("%s: %s", name, _DAMAGED)
            elif isinstance(remote, RemoteCheckpoint) and remote.note not in acknowledged:
                problem = self._not_extended(remote.note, mine)
                if problem:
                    cuts.append((name, problem, remote.note))
        return cuts

    def acknowledge_cuts(self, reason: str) -> list[tuple[str, str]]:
        """Record, signed, that an operator accepts the providers' checkpoints the trail
        does not extend (their notes go into the event), then publish a new checkpoint
        over them. Returns what was acknowledged."""
        cuts = self._cuts()
        if not cuts:
            return []
        self._checked = True  # this event is the acknowledgement itself
        self.trail.append(
            CUT_ACKNOWLEDGED,
            detail={
                "reason": reason,
                "problems": {name: problem for name, problem, _ in cuts},
                "notes": {name: note for name, _, note in cuts},
            },
        )
        self.recorded += 1
        return [(name, problem) for name, problem, _ in cuts]

    def _acknowledged(self) -> set[str]:
        return {
            str(note)
            for event in self.trail.events(event_type=CUT_ACKNOWLEDGED)
            for note in dict(event.detail.get("notes", {})).values()
        }

    def _current(self) -> Checkpoint:
        """The trail as it is now, as a checkpoint (unsigned: only size and root count)."""
        frontier, _ = self.trail.frontier()
        return Checkpoint(self.trail.origin, frontier.size, frontier.root())

    def _map(self, fn: Callable[[str], Any], names: list[str]) -> list[Any]:
        """``fn`` over ``names``, in parallel on the I/O pool when there is one; a provider
        error becomes None."""

        def safe(name: str) -> Any:
            try:
                return fn(name)
            except ProviderError:
                return None

        if self._io is None:
            return [safe(n) for n in names]
        return [f.result() for f in [self._io.submit(safe, n) for n in names]]

    def close(self) -> None:
        self.trail.close()

    def publish(self, tail_from: Mapping[str, tuple[int, int]] | None = None) -> dict[str, str]:
        """Sign a checkpoint and write it, sealed, to every provider that answers;
        ``tail_from`` gives per provider the (events, checkpoints) marks its map backup
        carries, so the blob adds what lies beyond. Returns what happened per provider."""
        note = self.trail.checkpoint()
        self.recorded = 0
        mine = Checkpoint.parse_unverified(note)  # just signed here
        acknowledged = self._acknowledged()
        names = [n for n in self._providers if not self._is_offline(n)]
        done = self._map(
            lambda n: self._publish_to(n, note, mine, (tail_from or {}).get(n), acknowledged),
            names,
        )
        outcome = dict.fromkeys(self._providers, "Offline: skipped, catches up when it answers")
        outcome.update(zip(names, done, strict=True))
        return outcome

    def _publish_to(
        self,
        name: str,
        note: str,
        mine: Checkpoint,
        marks: tuple[int, int] | None,
        acknowledged: set[str],
    ) -> str:
        store = self._providers[name]
        try:
            current = self._read(store, name)
            if current is not None and not current.damaged and current.note not in acknowledged:
                problem = self._not_extended(current.note, mine)
                if problem:
                    log.warning("not publishing the checkpoint to %s: %s", name, problem)
                    return f"kept the provider's checkpoint: {problem}"
            tail = self.trail.rows_since(*marks) if marks else {"events": [], "checkpoints": []}
            body = json.dumps({"note": note, "tail": encode(tail)}).encode()
            store.put(self.checkpoint_keys[name], aead.seal(self._seal_key, body, _CHECKPOINT_AAD))
            return "ok"
        except ProviderError as exc:
            return exc.message

    def _not_extended(self, remote_note: str, mine: Checkpoint) -> str:
        """Why the local trail does not extend the provider's checkpoint ("" when it does)."""
        try:
            remote = open_note(remote_note, list(self._keys.public_keys().values()))
        except NoteInvalid as exc:
            # Another run may have rotated the signing key since this one read the
            # keystore: read it again once before calling the checkpoint a forgery.
            if self.reread_keys is None or not self.reread_keys():
                return (
                    f"its checkpoint does not verify ({exc}); run `metanode storage audit verify`"
                )
            self.reread_keys = None
            return self._not_extended(remote_note, mine)
        if remote.size > mine.size:
            return (
                f"it covers {remote.size} events and the local trail holds {mine.size}: the "
                "trail was rolled back or lost; run `metanode storage audit verify`"
            )
        if self.trail.root_at(remote.size) != remote.root:
            return (
                f"its checkpoint at {remote.size} events disagrees with the local trail; "
                "run `metanode storage audit verify`"
            )
        return ""

    def _read(self, store: BlobStore, name: str) -> RemoteCheckpoint | None:
        """The provider's checkpoint blob, in either format; None if it has none."""
        try:
            sealed = store.get(self.checkpoint_keys[name])
        except ObjectNotFound:
            return None
        try:
            body = aead.open_sealed(self._seal_key, sealed, _CHECKPOINT_AAD)
            doc = json.loads(body)
            return RemoteCheckpoint(str(doc["note"]), decode(doc["tail"]))
        except (aead.OpenFailed, ValueError, KeyError, TypeError):
            pass
        try:  # written by versions before 0.2: the note alone
            note = aead.open_sealed(self._seal_key, sealed, _CHECKPOINT_AAD_V1).decode()
            return RemoteCheckpoint(note, {"events": [], "checkpoints": []})
        except (aead.OpenFailed, UnicodeDecodeError):
            return RemoteCheckpoint("", {}, damaged=True)

    def adopt_tail(self, name: str) -> int:
        """Recovery: add the events and checkpoint that provider ``name``'s checkpoint blob
        carries beyond its map backup, so the trail reaches the published checkpoint.
        Returns how many events were added."""
        found = self._read(self._providers[name], name)
        if found is None or not found.tail:
            return 0
        checkpoint = open_note(found.note, list(self._keys.public_keys().values()))
        before, _ = self.trail.marks()
        rows = {
            "events": found.tail.get("events", []),
            "checkpoints": [*found.tail.get("checkpoints", []), [checkpoint.size, found.note]],
        }
        self.trail.restore_rows(rows)
        return self.trail.marks()[0] - before

    def verify(self) -> TrailVerification:
        """The trail checked against every checkpoint the providers hold; a damaged
        checkpoint blob is a problem of its own."""
        names = list(self._providers)
        found = self._map(lambda n: self._read(self._providers[n], n), names)
        notes, damaged = [], []
        for name, remote in zip(names, found, strict=True):
            if remote is not None and remote.damaged:
                damaged.append(f"checkpoint on provider {name}: {_DAMAGED}")
            elif remote is not None:
                notes.append((f"provider {name}", remote.note))
        report = self.trail.verify(self._keys.public_keys(), notes)
        report.problems.extend(damaged)
        return report
