"""The audit trail on local disk: signed, hash-linked events in a Merkle tree, with
signed checkpoints.

Each event is canonical JSON signed by the node key and carrying the leaf
hash of the event before it, so an edited, inserted, removed or reordered
event breaks a signature or a link at that exact place. A trail cut back at
its end breaks nothing locally, which is why checkpoints (tree size and
root, signed, C2SP format) are also kept on the providers: one that is
larger than the local trail, or whose root the local trail does not
reproduce, gives the rollback away.

Stored in ``audit.sqlite`` (WAL, synchronous=FULL), or for a node whose hosts share
their map, in the ``metanode_trail`` schema of its PostgreSQL database, where every
host appends to the one trail in one order (database/postgres.py)::

    events(seq, time, type, block_id, status, body, leaf)  -- body: the signed JSON;
        leaf: SHA-256(0x00 || body); time/type/block_id/status: copies, for queries
    checkpoints(size, note)                                 -- signed notes
    meta(key, value)                                        -- the Merkle frontier
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metanode_storage.audit.drafts import Draft, EventDrafts, canonical
from metanode_storage.audit.event_check import check_event
from metanode_storage.audit.merkle import Frontier, consistency_proof, leaf_hash
from metanode_storage.audit.note import Checkpoint, NoteInvalid, open_note
from metanode_storage.crypto.signing import NodeSigner, PublicKey
from metanode_storage.database import (
    TRAIL_SCHEMA,
    DatabaseMissing,
    DatabaseUrl,
    copy_sqlite,
    open_database,
    translator,
)
from metanode_storage.errors import AuditTrailDamaged, LocalStateError

OK, VIOLATION, FAILED, DENIED = "ok", "violation", "failed", "denied"
STORE, RETRIEVE, VERIFY, REPAIR, DELETE = "store", "retrieve", "verify", "repair", "delete"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY, time INTEGER NOT NULL, type TEXT NOT NULL,
    block_id TEXT NOT NULL, status TEXT NOT NULL, body BLOB NOT NULL, leaf BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS events_block ON events (block_id);
CREATE INDEX IF NOT EXISTS events_type ON events (type, time);
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note TEXT NOT NULL);
"""

_SET_FRONTIER = (
    "INSERT INTO meta VALUES ('frontier', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

# An event to append: (type, block id, status, detail).
NewEvent = tuple[str, str, str, Mapping[str, Any] | None]


def audit_origin(node_id: str) -> str:
    """The checkpoint origin line of a node's trail."""
    return f"metanode/{node_id}"


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    time: int
    type: str
    block_id: str
    status: str
    detail: dict[str, Any]
    key_id: str
    fence: int | None = None  # the QLOCK fencing token it was written under


@dataclass(frozen=True)
class AuditSummary:
    total_events: int
    storage_operations: int
    retrieval_operations: int
    integrity_violations: int
    by_type: dict[str, int]
    checkpoint_size: int


@dataclass
class TrailVerification:
    events: int = 0
    checkpoints: int = 0
    covered: int = 0  # events covered by the newest valid checkpoint
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class AuditTrail:
    def __init__(
        self,
        where: Path | DatabaseUrl,
        origin: str,
        signer: NodeSigner | None = None,
        *,
        create: bool = False,
    ) -> None:
        """Open the trail at ``where`` (an SQLite file, or the node's PostgreSQL database,
        where every host appends to the one trail). Only `init` passes ``create``: a trail
        that went missing is reported, never silently started afresh."""
        self._where = where
        self.origin = origin
        self._signer = signer
        # The QLOCK fencing token events are written under (engine/qlock.py); each event
        # carries it as "fence", so an auditor can tell which holder wrote what.
        self.fence: Callable[[], int | None] = lambda: None
        try:
            self._db = open_database(
                where,
                TRAIL_SCHEMA,
                synchronous="FULL",
                create=create,
                translate=translator("audit trail", where, AuditTrailDamaged),
            )
        except DatabaseMissing as exc:
            raise AuditTrailDamaged(
                f"the audit trail is missing: {exc}",
                "restore the node with `metanode storage recover` into a new --home; "
                "a new trail would hide what the old one recorded",
            ) from None
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def use_signer(self, signer: NodeSigner) -> None:
        """Sign further events and checkpoints with this key (after a key rotation)."""
        self._signer = signer

    # -- writing ---------------------------------------------------------------------

    def frontier(self) -> tuple[Frontier, str]:
        """The Merkle frontier of the trail now, and the last event's leaf hash (hex)."""
        return self._frontier()

    def _frontier(self) -> tuple[Frontier, str]:
        row = self._db.execute("SELECT value FROM meta WHERE key='frontier'").fetchone()
        if row is None:
            return Frontier(), ""
        doc = json.loads(row[0])
        return Frontier(doc["size"], [bytes.fromhex(h) for h in doc["hashes"]]), doc["last"]

    def append(
        self,
        event_type: str,
        block_id: str = "",
        status: str = OK,
        detail: Mapping[str, Any] | None = None,
    ) -> int:
        """Sign and append one event; return its sequence number."""
        return self.append_many([(event_type, block_id, status, detail)])

    def append_many(self, events: Sequence[NewEvent]) -> int:
        """Append (type, block id, status, detail) events in one transaction, signed as a
        group: the last one carries the signature, and it covers the others through the
        chain of leaf hashes each event holds of the one before. Return the last one's
        sequence number."""
        if self._signer is None:
            raise LocalStateError("this audit trail was opened read-only")
        now = int(time.time())
        fence = self.fence()
        with self._db.transaction():
            frontier, last = self._frontier()
            rows = []
            drafts = EventDrafts(now, self._signer.key_id, fence)
            for position, (event_type, block_id, status, detail) in enumerate(events, 1):
                event = Draft(frontier.size, event_type, block_id, status, detail, last)
                body = drafts.body(event)
                if position == len(events):
                    signature = self._signer.sign(body).hex()
                    body = canonical({**drafts.signed(event), "sig": signature})
                leaf = leaf_hash(body)
                rows.append((frontier.size, now, event_type, block_id, status, body, leaf))
                frontier.append(leaf)
                last = leaf.hex()
            # one statement for the group (one round trip to a shared map's server)
            self._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            state = {
                "size": frontier.size,
                "hashes": [h.hex() for h in frontier.hashes],
                "last": last,
            }
            self._db.execute(_SET_FRONTIER, (json.dumps(state),))
        return frontier.size - 1

    def checkpoint(self) -> str:
        """Sign (or reuse) the checkpoint of the trail as it is now; return the note."""
        if self._signer is None:
            raise LocalStateError("this audit trail was opened read-only")
        with self._db.transaction():
            frontier, _ = self._frontier()
            row = self._db.execute(
                "SELECT note FROM checkpoints WHERE size=?", (frontier.size,)
            ).fetchone()
            if row is not None:
                note = str(row[0])
            else:
                note = Checkpoint(self.origin, frontier.size, frontier.root()).sign(self._signer)
                self._db.execute("INSERT INTO checkpoints VALUES (?, ?)", (frontier.size, note))
        return note

    # -- backup and recovery ------------------------------------------------------------

    def rows_since(self, events_from: int, checkpoints_after: int) -> dict[str, list[list[Any]]]:
        """Events from sequence number ``events_from`` and checkpoints larger than
        ``checkpoints_after``, read in one transaction: what a backup segment carries."""
        with self._db.snapshot() as db:
            events = db.execute(
                "SELECT seq, time, type, block_id, status, body, leaf FROM events "
                "WHERE seq >= ? ORDER BY seq",
                (events_from,),
            ).fetchall()
            checkpoints = db.execute(
                "SELECT size, note FROM checkpoints WHERE size > ? ORDER BY size",
                (checkpoints_after,),
            ).fetchall()
        return {"events": [list(r) for r in events], "checkpoints": [list(r) for r in checkpoints]}

    def copy_to(self, target: Path) -> None:
        """A consistent copy of the trail as a new SQLite file at ``target`` (what a map
        backup's snapshot carries), from either backend."""
        if isinstance(self._where, Path):
            copy_sqlite(self._db, target)
            return
        copy = AuditTrail(target, self.origin, create=True)
        try:
            self.copy_into(copy)
        finally:
            copy.close()

    def copy_into(self, target: AuditTrail) -> None:
        """Every event, checkpoint and the frontier into ``target``, a new trail (recovery
        into another backend), as one consistent state."""
        with self._db.snapshot() as db, target._db.transaction() as out:
            after = -1
            while page := db.execute(
                "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT 5000", (after,)
            ).fetchall():
                out.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", page)
                after = page[-1][0]
            for table in ("checkpoints", "meta"):
                rows = db.execute(f"SELECT * FROM {table}").fetchall()
                out.executemany(f"INSERT INTO {table} VALUES (?, ?)", rows)

    def root_at(self, size: int) -> bytes | None:
        """The Merkle root of the first ``size`` events: from the local checkpoint of that
        size when there is one, else computed from the events; None past the trail's end."""
        row = self._db.execute("SELECT note FROM checkpoints WHERE size=?", (size,)).fetchone()
        if row is not None:
            return Checkpoint.parse_unverified(str(row[0])).root
        frontier = Frontier()
        for event in self._all_events():
            if frontier.size == size:
                break
            frontier.append(event[6])
        return frontier.root() if frontier.size == size else None

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 6962 proof that the trail's first ``old_size`` events are a prefix of its
        first ``new_size`` (reads the leaf hashes, 32 bytes an event)."""
        leaves = [row[6] for row, _ in zip(self._all_events(), range(new_size), strict=False)]
        if len(leaves) < new_size:
            raise LocalStateError(f"the trail holds {len(leaves)} events, not {new_size}")
        return consistency_proof(leaves, old_size)

    def marks(self) -> tuple[int, int]:
        """(events held, largest checkpoint size): where the next backup segment starts."""
        events = self._db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM events").fetchone()[0]
        largest = self._db.execute("SELECT COALESCE(MAX(size), 0) FROM checkpoints").fetchone()[0]
        return int(events), int(largest)

    def restore_rows(self, rows: Mapping[str, Sequence[Sequence[Any]]]) -> None:
        """Recovery: add events and checkpoints from a backup (those already held are
        skipped), then rebuild the Merkle frontier from every event, so appends go on."""
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                rows["events"],
            )
            db.executemany(
                "INSERT INTO checkpoints VALUES (?, ?) ON CONFLICT DO NOTHING",
                rows["checkpoints"],
            )
            frontier, last = Frontier(), ""
            for row in self._all_events():
                frontier.append(row[6])
                last = row[6].hex()
            state = {
                "size": frontier.size,
                "hashes": [h.hex() for h in frontier.hashes],
                "last": last,
            }
            db.execute(_SET_FRONTIER, (json.dumps(state),))

    # -- reading ---------------------------------------------------------------------

    def summary(self) -> AuditSummary:
        by_type = dict(self._db.execute("SELECT type, COUNT(*) FROM events GROUP BY type"))
        violations = self._db.execute(
            "SELECT COUNT(*) FROM events WHERE status=?", (VIOLATION,)
        ).fetchone()[0]
        latest = self._db.execute("SELECT MAX(size) FROM checkpoints").fetchone()[0]
        return AuditSummary(
            total_events=sum(by_type.values()),
            storage_operations=by_type.get(STORE, 0),
            retrieval_operations=by_type.get(RETRIEVE, 0),
            integrity_violations=int(violations),
            by_type=by_type,
            checkpoint_size=int(latest or 0),
        )

    def events(
        self,
        *,
        block_id: str | None = None,
        event_type: str | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditEvent]:
        clauses: list[str] = []
        args: list[str | int] = []
        for column, value in (("block_id", block_id), ("type", event_type)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            clauses.append("time >= ?")
            args.append(since)
        if until is not None:
            clauses.append("time <= ?")
            args.append(until)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = f"LIMIT {int(limit)}" if limit else ""
        for (body,) in self._db.execute(
            f"SELECT body FROM events {where} ORDER BY seq {tail}", args
        ):
            doc = json.loads(body)
            yield AuditEvent(
                doc["seq"],
                doc["time"],
                doc["type"],
                doc["block_id"],
                doc["status"],
                doc["detail"],
                doc["key_id"],
                doc.get("fence"),
            )

    def latest_note(self) -> str | None:
        row = self._db.execute("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    # -- verification --------------------------------------------------------------------

    def verify(
        self, public_keys: Mapping[str, PublicKey], remote_notes: Sequence[tuple[str, str]] = ()
    ) -> TrailVerification:
        """Check every event, every link, every checkpoint; ``remote_notes`` are
        (where, note) pairs fetched from providers. Stops at the first bad event."""
        report = TrailVerification()
        keys = list(public_keys.values())
        checkpoints: dict[int, Checkpoint] = {}
        for size, note in self._db.execute("SELECT size, note FROM checkpoints ORDER BY size"):
            try:
                checkpoint = open_note(note, keys)
            except NoteInvalid as exc:
                report.problems.append(f"local checkpoint at size {size}: {exc}")
                return report
            if checkpoint.size != size or checkpoint.origin != self.origin:
                report.problems.append(f"local checkpoint at size {size} was moved or altered")
                return report
            checkpoints[size] = checkpoint
        remote: list[tuple[str, Checkpoint]] = []
        for where, note in remote_notes:
            try:
                remote.append((where, open_note(note, keys)))
            except NoteInvalid as exc:
                report.problems.append(f"checkpoint on {where}: {exc}")
                return report
        for where, checkpoint in remote:
            checkpoints.setdefault(checkpoint.size, checkpoint)
            if checkpoints[checkpoint.size].root != checkpoint.root:
                report.problems.append(
                    f"checkpoint on {where} at size {checkpoint.size} disagrees with the local one"
                )
                return report
        frontier, last = Frontier(), ""
        unsigned_from = -1  # the first event of a group whose signing event is not yet met
        for row in self._all_events():
            problem, signed = check_event(row, frontier.size, last, public_keys)
            if problem:
                report.problems.append(f"event #{frontier.size}: {problem}")
                return report
            if signed:
                unsigned_from = -1
            elif unsigned_from < 0:
                unsigned_from = frontier.size
            last = row[6].hex()
            frontier.append(row[6])
            report.events = frontier.size
            expected = checkpoints.get(frontier.size)
            if expected is not None:
                if expected.root != frontier.root():
                    report.problems.append(
                        f"checkpoint at size {frontier.size} does not match the trail: an event "
                        f"before #{frontier.size} was altered, removed, inserted or reordered"
                    )
                    return report
                report.checkpoints += 1
                report.covered = frontier.size
        if unsigned_from >= 0:
            report.problems.append(
                f"events #{unsigned_from} to #{frontier.size - 1} are signed by no event after "
                "them: the event that signed their group was removed"
            )
            return report
        beyond = [c for c in checkpoints.values() if c.size > frontier.size]
        if beyond:
            largest = max(beyond, key=lambda c: c.size)
            where = next((w for w, c in remote if c.size == largest.size), "local disk")
            report.problems.append(
                f"the trail was cut back: it has {frontier.size} events, but the checkpoint on "
                f"{where} covers {largest.size}"
            )
        return report

    def _all_events(self) -> Iterator[tuple[Any, ...]]:
        """Every event row in order, a page at a time (the trail can be large)."""
        after = -1
        while True:
            page = self._db.execute(
                "SELECT seq, time, type, block_id, status, body, leaf FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT 2000",
                (after,),
            ).fetchall()
            if not page:
                return
            yield from page
            after = page[-1][0]
