"""Incremental map backups: per provider, a snapshot and a journal of segments.

Losing the machine must not lose the data, and backing the map up must cost
what changed, not what the node holds. Each provider keeps, under names only
this node can derive, a **snapshot** of the node's state and a **journal** of
segments, each carrying only what changed after the one before it:

- a snapshot: the config, keystore, block map and audit trail (consistent
  SQLite copies), as one stream cut into parts of ``PART_SIZE`` bytes, each
  part compressed and sealed on its own (bounded memory, no size limit);
- a segment: the map rows changed since the previous one (or their deletion),
  the audit events and checkpoints added, and the config or keystore when
  they changed, compressed, padded to a Padmé length and sealed;
- the head, at the name recovery finds from the passphrase and the provider's
  name alone (engine/backup.py's locator): which snapshot, how many parts, and
  the SHA-256 of every segment in order.

Every sealed piece is bound by its AEAD associated data to its snapshot id and
its position, so recovery refuses a missing segment (a gap), a segment moved
to another place (a reordering), or one from an older snapshot. After
``MAX_SEGMENTS`` segments, or when they outgrow half the snapshot, the next
backup writes a new snapshot and deletes the old one's pieces.

What each provider holds is recorded locally in ``backup-state.json`` (not
secret: every name is keyed), or for a node whose map is shared by several hosts
in its database, so every host extends the same logs (engine/shared_home.py). A
provider that misses a backup (down, or a failed write) gets a fresh snapshot the
next time it answers; losing the file costs one snapshot per provider, nothing else.

Formats (all JSON inside AES-256-GCM under the provider's locator key)::

    head    {"v": 2, "node_id", "snapshot": {"id", "parts", "sha256", "bytes"},
             "segments": [sha256 hex, ...], "written_at"}      aad HEAD_AAD
    part i  zstd(the stream's bytes i*PART_SIZE ..)           aad PART_AAD|id|i
    stream  u32 manifest length | manifest JSON {"files": [{"name", "size", "sha256"}]}
            | the files back to back          (engine/backup_snapshot.py)
    seg i   pad(zstd(JSON {"snapshot", "index", "prev"} "\n" JSON {"v": 1, "map": [[table,
            key, row|null]], "audit": {"events", "checkpoints"}, "files": {name: bytes}}))
                                                             aad SEGMENT_AAD|id|i
Bytes inside JSON are written as {"b": base64}. Reading it back: engine/backup_restore.py.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from hashlib import sha256

import zstandard

from metanode_storage.audit.trail import AuditTrail
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.config.paths import NodeLayout
from metanode_storage.crypto import aead
from metanode_storage.crypto.xwing import XWingRecipient
from metanode_storage.engine.backup import Locator
from metanode_storage.engine.backup_snapshot import PLAIN_FILES, Snapshot, staging, take_snapshot
from metanode_storage.engine.blobformat import padme
from metanode_storage.engine.qlock import QLock
from metanode_storage.engine.recovery_pointer import pointer_name, seal_pointer
from metanode_storage.engine.shared_home import HomeFile
from metanode_storage.errors import (
    NotEnoughProviders,
    ProviderError,
)
from metanode_storage.jsonbytes import encode
from metanode_storage.providers.base import BlobStore

HEAD_AAD = b"metanode map backup head v2"
PART_AAD = b"metanode map backup part v2"
SEGMENT_AAD = b"metanode map backup segment v2"
PART_SIZE = 4 * 1024 * 1024
MAX_SEGMENTS = 64
MIN_COPIES = 2
# What is wrong with one provider's copy of its log ("" when whole): engine/backup_check.py
# (the provider, its locator, the log written there, the recovery pointers written there)
LogCheck = Callable[[BlobStore, Locator, "ProviderLog", list[str]], str]


# -- names and sealing ----------------------------------------------------------------------


def piece_name(locator: Locator, kind: str, snapshot_id: str, index: int) -> str:
    """Where a part or segment lives: keyed by the locator's key, so a provider cannot
    tell which blobs belong together, or to which node."""
    digest = aead.keyed_hash(
        locator.seal_key.reveal(), b"backup-piece", kind.encode(), snapshot_id.encode(),
        index.to_bytes(8, "big"),
    )  # fmt: skip
    return digest[:16].hex()


def log_pieces(locator: Locator, log: ProviderLog) -> list[tuple[str, bytes, int, str]]:
    """Every part, then every segment, of ``log``: (kind, AEAD label, index, blob name)."""
    parts = [("part", PART_AAD, i) for i in range(log.parts)]
    segments = [("segment", SEGMENT_AAD, i) for i in range(len(log.segments))]
    return [
        (kind, aad, i, piece_name(locator, kind, log.snapshot_id, i))
        for kind, aad, i in parts + segments
    ]


def position(aad: bytes, snapshot_id: str, index: int) -> bytes:
    return aad + b"\0" + snapshot_id.encode() + b"\0" + index.to_bytes(8, "big")


def _pad(data: bytes) -> bytes:
    """u32 length, the data, zeros up to the Padmé length (a provider sees a rounded size)."""
    body = len(data).to_bytes(4, "big") + data
    return body + bytes(padme(len(body)) - len(body))


def unpad(padded: bytes) -> bytes:
    length = int.from_bytes(padded[:4], "big")
    if length > len(padded) - 4:
        raise ValueError("padding length is inconsistent")
    return padded[4 : 4 + length]


# -- what the node remembers about each provider's log ------------------------------------


@dataclass
class ProviderLog:
    snapshot_id: str
    parts: int
    snapshot_sha: str
    snapshot_bytes: int
    segments: list[str] = field(default_factory=list)  # SHA-256 of each segment, in order
    journal_bytes: int = 0
    change_mark: int = 0  # map changes up to here are carried
    events_mark: int = 0  # audit events before this sequence number are carried
    checkpoints_mark: int = 0  # checkpoints up to this size are carried
    files: dict[str, str] = field(default_factory=dict)  # config/keystore SHA-256 carried
    written_at: float = 0.0
    # when the provider was last found to hold every piece (engine/backup_check.py)
    checked_at: float = 0.0
    # the next backup must replace the whole log (and delete it): what it holds must go
    replace: bool = False

    def wants_snapshot(self) -> bool:
        return (
            self.replace
            or len(self.segments) >= MAX_SEGMENTS
            or self.journal_bytes > max(1 << 20, self.snapshot_bytes // 2)
        )


@dataclass
class BackupState:
    logs: dict[str, ProviderLog] = field(default_factory=dict)
    doomed: dict[str, list[str]] = field(default_factory=dict)  # superseded pieces to delete
    # per provider, the recovery recipients (fingerprints) whose pointer it holds
    pointers: dict[str, list[str]] = field(default_factory=dict)
    last_failure: str = ""
    last_failure_at: float = 0.0

    @classmethod
    def load(cls, source: HomeFile) -> BackupState:
        try:
            doc = json.loads(source.read() or b"{}")
            return cls(
                logs={n: ProviderLog(**v) for n, v in doc.get("logs", {}).items()},
                doomed={n: list(v) for n, v in doc.get("doomed", {}).items()},
                pointers={n: list(v) for n, v in doc.get("pointers", {}).items()},
                last_failure=str(doc.get("last_failure", "")),
                last_failure_at=float(doc.get("last_failure_at", 0.0)),
            )
        except (OSError, ValueError, TypeError):
            return cls()  # lost or damaged: every provider gets a fresh snapshot

    def save(self, target: HomeFile) -> None:
        doc = {
            "logs": {n: asdict(v) for n, v in self.logs.items()},
            "doomed": self.doomed,
            "pointers": self.pointers,
            "last_failure": self.last_failure,
            "last_failure_at": self.last_failure_at,
        }
        target.write(json.dumps(doc, indent=1).encode())


# -- writing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Segment:
    """A segment's plaintext, and where the provider's log stands once it is written."""

    body: bytes
    change_mark: int
    events_mark: int
    checkpoints_mark: int
    files: dict[str, str]  # SHA-256 of the config and keystore as carried


class BackupLog:
    def __init__(
        self,
        layout: NodeLayout,
        node_id: str,
        providers: Mapping[str, BlobStore],
        locators: Mapping[str, Locator],
        blockmap: BlockMap,
        trail: AuditTrail,
        io_pool: Executor,
        is_offline: Callable[[str], bool],
        lock: QLock,
        state_file: HomeFile,
        recipients: Sequence[XWingRecipient] = (),
    ) -> None:
        self._layout = layout
        self._lock = lock
        self._recipients = recipients
        self._node_id = node_id
        self._providers = providers
        self._locators = locators
        self._blockmap = blockmap
        self._trail = trail
        self._io = io_pool
        self._is_offline = is_offline
        self._state_file = state_file  # in the home; shared by the hosts of a shared map
        self._state_lock = threading.Lock()

    def state(self) -> BackupState:
        return BackupState.load(self._state_file)

    def write(self) -> dict[str, str]:
        """Bring every provider that answers up to date; "ok" (or what went wrong) each.

        Runs under the QLOCK ``backup`` lock, so two runs never write the same provider's
        log at once. Raises NotEnoughProviders when fewer than two providers are current.
        """
        with self._lock.exclusive("back up the map"):
            state = self.state()
            outcome = self._write_locked(state)
            current = [n for n, v in outcome.items() if v == "ok"]
            if current:
                keep = min(state.logs[n].change_mark for n in current)
                self._blockmap.forget_changes(keep)
            if len(current) < MIN_COPIES:
                state.last_failure = "; ".join(f"{k}: {v}" for k, v in outcome.items())
                state.last_failure_at = time.time()
            else:
                state.last_failure = ""
            state.save(self._state_file)
        if len(current) < MIN_COPIES:
            raise NotEnoughProviders(
                f"the map backup is current on {len(current)} provider(s), fewer than "
                f"{MIN_COPIES}: " + "; ".join(f"{k}: {v}" for k, v in outcome.items()),
                "bring providers back; the next change (or `metanode storage backup-map`) "
                "catches them up",
            )
        return outcome

    def _write_locked(self, state: BackupState) -> dict[str, str]:
        outcome: dict[str, str] = {}
        targets = []
        for name in self._providers:
            if name not in self._locators:
                outcome[name] = "no backup locator (reconfigure the provider)"
            elif self._is_offline(name):
                outcome[name] = "Offline: skipped; it gets a fresh snapshot when it answers"
                state.logs.pop(name, None)
            else:
                targets.append(name)
        need_snapshot = [
            n for n in targets if n not in state.logs or state.logs[n].wants_snapshot()
        ]
        with staging(self._layout.home) as tmp:
            snapshot = (
                take_snapshot(self._layout, self._blockmap, self._trail, tmp)
                if need_snapshot
                else None
            )
            segments: dict[tuple[int, int, int, tuple[tuple[str, str], ...]], _Segment | None] = {}
            jobs = {
                name: self._io.submit(self._write_provider, name, state, snapshot, segments)
                for name in targets
            }
            for name, job in jobs.items():
                try:
                    outcome[name] = job.result()
                except ProviderError as exc:
                    outcome[name] = exc.message
                    with self._state_lock:
                        state.logs.pop(name, None)  # whatever it holds now: snapshot next time
        return outcome

    def _write_provider(
        self,
        name: str,
        state: BackupState,
        snapshot: Snapshot | None,
        segments: dict[tuple[int, int, int, tuple[tuple[str, str], ...]], _Segment | None],
    ) -> str:
        store, locator = self._providers[name], self._locators[name]
        with self._state_lock:
            log = state.logs.get(name)
            doomed = list(state.doomed.get(name, []))
        old_state = log is not None
        if log is None or log.wants_snapshot():
            assert snapshot is not None
            old = log
            log = self._upload_snapshot(store, locator, snapshot)
            if old is not None:
                doomed += self._pieces(locator, old)
        else:
            marks = (log.change_mark, log.events_mark, log.checkpoints_mark)
            key = (*marks, tuple(sorted(log.files.items())))
            with self._state_lock:
                known = key in segments
                built = segments.get(key)
            if not known:
                built = self._build_segment(log)
                with self._state_lock:
                    segments[key] = built
            if built is None:
                return "ok"  # nothing changed for this provider
            self._append_segment(store, locator, log, built)
        self._write_head(store, locator, log)
        with self._state_lock:
            state.logs[name] = log
            # a provider the state knew nothing of may have lost everything: its pointers too
            pointed = list(state.pointers.get(name, [])) if old_state else []
        for recipient in self._recipients:  # once per provider and recipient
            if recipient.fingerprint not in pointed:
                store.put(
                    pointer_name(recipient, name),
                    seal_pointer(recipient, self._node_id, name, locator),
                )
                pointed.append(recipient.fingerprint)
        with self._state_lock:
            state.pointers[name] = pointed
        remaining = [key for key in doomed if not self._deleted(store, key)]
        with self._state_lock:
            state.doomed[name] = remaining
        return "ok"

    def forget_broken(self, check: LogCheck, dry_run: bool = False) -> dict[str, str]:
        """Providers whose log ``check`` finds broken (engine/backup_check.py), with what is
        wrong; unless ``dry_run`` they are forgotten, so the next write gives each a fresh
        snapshot and deletes what is left of the old log. Under the backup lock: a log
        another run is extending is never half seen. A provider out of reach is skipped."""
        with self._lock.exclusive("check the map backups"):
            state = self.state()
            names = [
                n
                for n in state.logs
                if n in self._providers and n in self._locators and not self._is_offline(n)
            ]

            def problem(name: str) -> str | None:
                pointed = state.pointers.get(name, [])
                pointers = [
                    pointer_name(r, name) for r in self._recipients if r.fingerprint in pointed
                ]
                store, locator = self._providers[name], self._locators[name]
                try:
                    return check(store, locator, state.logs[name], pointers)
                except ProviderError:
                    return None  # an outage, not a broken log: checked again next time

            checks = [self._io.submit(problem, n) for n in names]
            found = {n: check.result() for n, check in zip(names, checks, strict=True)}
            broken = {n: why for n, why in found.items() if why}
            if not dry_run:
                now = time.time()
                for name, why in found.items():
                    if why == "":  # found whole: `status` says how recently
                        state.logs[name].checked_at = now
                for name in broken:
                    pieces = self._pieces(self._locators[name], state.logs.pop(name))
                    state.doomed.setdefault(name, []).extend(pieces)
                state.save(self._state_file)
        return broken

    @staticmethod
    def _deleted(store: BlobStore, key: str) -> bool:
        try:
            store.delete(key)
            return True
        except ProviderError:
            return False

    @staticmethod
    def _pieces(locator: Locator, log: ProviderLog) -> list[str]:
        return [name for _, _, _, name in log_pieces(locator, log)]

    # -- snapshots

    def _upload_snapshot(
        self, store: BlobStore, locator: Locator, snapshot: Snapshot
    ) -> ProviderLog:
        snapshot_id = uuid.uuid4().hex
        key = locator.seal_key.reveal()
        compressor = zstandard.ZstdCompressor(level=3)
        parts = 0
        with open(snapshot.path, "rb") as fh:
            while True:
                piece = fh.read(PART_SIZE)
                if not piece and parts:
                    break
                sealed = aead.seal(
                    key, compressor.compress(piece), position(PART_AAD, snapshot_id, parts)
                )
                store.put(piece_name(locator, "part", snapshot_id, parts), sealed)
                parts += 1
                if not piece:
                    break
        return ProviderLog(
            snapshot_id=snapshot_id,
            parts=parts,
            snapshot_sha=snapshot.sha256,
            snapshot_bytes=snapshot.size,
            change_mark=snapshot.change_mark,
            events_mark=snapshot.events_mark,
            checkpoints_mark=snapshot.checkpoints_mark,
            files=dict(snapshot.files),
            written_at=time.time(),
        )

    # -- segments

    def _build_segment(self, log: ProviderLog) -> _Segment | None:
        """The next segment for a provider at these marks; None if nothing changed since."""
        change_mark, changed = self._blockmap.changes_since(log.change_mark)
        rows = self._trail.rows_since(log.events_mark, log.checkpoints_mark)
        files, hashes = {}, {}
        for name in PLAIN_FILES:
            raw = (self._layout.home / name).read_bytes()
            hashes[name] = sha256(raw).hexdigest()
            if hashes[name] != log.files.get(name):
                files[name] = raw
        if not changed and not rows["events"] and not rows["checkpoints"] and not files:
            return None
        document = {"v": 1, "map": changed, "audit": rows, "files": files}
        return _Segment(
            json.dumps(encode(document)).encode(),
            change_mark,
            max([log.events_mark] + [r[0] + 1 for r in rows["events"]]),
            max([log.checkpoints_mark] + [r[0] for r in rows["checkpoints"]]),
            hashes,
        )

    def _append_segment(
        self, store: BlobStore, locator: Locator, log: ProviderLog, segment: _Segment
    ) -> None:
        index = len(log.segments)
        prev = log.segments[-1] if log.segments else log.snapshot_sha
        framed = (
            json.dumps({"snapshot": log.snapshot_id, "index": index, "prev": prev}).encode()
            + b"\n"
            + segment.body
        )
        sealed = aead.seal(
            locator.seal_key.reveal(),
            _pad(zstandard.ZstdCompressor(level=3).compress(framed)),
            position(SEGMENT_AAD, log.snapshot_id, index),
        )
        store.put(piece_name(locator, "segment", log.snapshot_id, index), sealed)
        log.segments.append(sha256(framed).hexdigest())
        log.journal_bytes += len(sealed)
        log.change_mark = segment.change_mark
        log.events_mark = segment.events_mark
        log.checkpoints_mark = segment.checkpoints_mark
        log.files = dict(segment.files)  # the versions carried, not whatever is on disk now
        log.written_at = time.time()

    def _write_head(self, store: BlobStore, locator: Locator, log: ProviderLog) -> None:
        head = {
            "v": 2,
            "node_id": self._node_id,
            "snapshot": {
                "id": log.snapshot_id,
                "parts": log.parts,
                "sha256": log.snapshot_sha,
                "bytes": log.snapshot_bytes,
            },
            "segments": log.segments,
            "written_at": int(time.time()),
        }
        store.put(
            locator.blob_key,
            aead.seal(locator.seal_key.reveal(), json.dumps(head).encode(), HEAD_AAD),
        )
