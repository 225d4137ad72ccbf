"""The QLOCK lease rows, in the block map's SQLite file (engine/qlock.py has the policy).

They sit beside the map so that a map transaction can check, inside itself, that the
writer's lease still stands (``check_fence``): a holder that was paused past its
deadline and taken over cannot write after all. The tables have no change triggers,
so map backups leave them out: leases belong to the machine that holds them.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from metanode_storage.database import (
    MAP_SCHEMA,
    Database,
    DatabaseUrl,
    open_database,
    translator,
)
from metanode_storage.errors import LeaseLost, LocalStateError

SHARED, EXCLUSIVE = "shared", "exclusive"

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    token INTEGER PRIMARY KEY, name TEXT NOT NULL, mode TEXT NOT NULL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, pid_start TEXT NOT NULL,
    purpose TEXT NOT NULL, acquired REAL NOT NULL, deadline REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lease_waiters (
    token INTEGER PRIMARY KEY, name TEXT NOT NULL, deadline REAL NOT NULL);
CREATE TABLE IF NOT EXISTS lease_tokens (id INTEGER PRIMARY KEY CHECK (id = 0),
    last INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Lease:
    token: int
    name: str
    mode: str
    host: str
    pid: int
    purpose: str
    acquired: float
    deadline: float

    @property
    def holder(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def to_dict(self) -> dict[str, object]:
        return {
            "token": self.token,
            "name": self.name,
            "mode": self.mode,
            "holder": self.holder,
            "purpose": self.purpose,
            "acquired": self.acquired,
            "deadline": self.deadline,
        }


# The columns of a Lease, in its fields' order.
_COLUMNS = ", ".join(f.name for f in fields(Lease))


def _process_start(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot), so a reused pid is not taken for
    the holder; "" where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the command name (field 2) may hold spaces: count fields after its ')'
            return stat.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


def _process_gone(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return bool(started) and _process_start(pid) not in ("", started)


_HOST = socket.gethostname()
_PID_START = _process_start(os.getpid())


class LeaseTable:
    """The lease rows: taking, renewing, releasing and breaking leases, and the fence
    check that map transactions make."""

    def __init__(self, where: Path | DatabaseUrl, *, create: bool = False) -> None:
        """The lease rows beside the map at ``where`` (its SQLite file, or its schema in
        the node's PostgreSQL database, where every host sees them)."""
        self._db = open_database(
            where,
            MAP_SCHEMA,
            synchronous="FULL",
            create=create,
            translate=translator("lock table", where, LocalStateError),
        )
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def try_acquire(
        self, name: str, mode: str, purpose: str, ttl: float, waiter: int | None
    ) -> tuple[Lease | None, list[Lease], int | None]:
        """One attempt: (the lease or None, stale leases taken over, the waiter token an
        exclusive request keeps while it waits)."""
        now = time.time()
        with self._db.transaction() as db:
            stale = self._drop_stale(db, name, now)
            held = self._leases(db, "WHERE name=?", (name,))
            others = [h for h in held if mode == EXCLUSIVE or h.mode == EXCLUSIVE]
            waiting = [
                row
                for row in db.execute("SELECT token FROM lease_waiters WHERE name=?", (name,))
                if row[0] != waiter
            ]
            blocked = bool(others) or (mode == SHARED and bool(waiting))
            if blocked:
                if mode == EXCLUSIVE:
                    waiter = waiter if waiter is not None else self._next_token(db)
                    db.execute(
                        "INSERT INTO lease_waiters VALUES (?, ?, ?) ON CONFLICT (token) "
                        "DO UPDATE SET name = excluded.name, deadline = excluded.deadline",
                        (waiter, name, now + ttl),
                    )
                return None, stale, waiter
            if waiter is not None:
                db.execute("DELETE FROM lease_waiters WHERE token=?", (waiter,))
            lease = Lease(
                self._next_token(db), name, mode, _HOST, os.getpid(), purpose, now, now + ttl
            )
            db.execute(
                f"INSERT INTO leases ({_COLUMNS}, pid_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*astuple(lease), _PID_START),
            )
            return lease, stale, None

    def renew(self, token: int, ttl: float) -> bool:
        """Push the deadline on; False when the lease is gone (broken or taken over)."""
        now = time.time()
        with self._db.transaction() as db:
            return (
                db.execute(
                    "UPDATE leases SET deadline=? WHERE token=? AND deadline>=?",
                    (now + ttl, token, now),
                ).rowcount
                == 1
            )

    def release(self, token: int) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM leases WHERE token=?", (token,))
            db.execute("DELETE FROM lease_waiters WHERE token=?", (token,))

    def waiting(self, name: str) -> bool:
        """An exclusive request for ``name`` is waiting (and has not given up)."""
        row = self._db.execute(
            "SELECT 1 FROM lease_waiters WHERE name=? AND deadline>=?", (name, time.time())
        ).fetchone()
        return row is not None

    def leases(self) -> list[Lease]:
        return self._leases(self._db, "", ())

    def holders(self) -> list[tuple[Lease, str]]:
        """Every lease with its state: "held", "expired" (past its deadline) or "holder
        gone" (its process on this host is no longer there); the next run takes the
        last two over."""
        return self._with_state(self._db, "", (), time.time())

    def break_leases(self, name: str, token: int | None = None) -> list[Lease]:
        """Remove ``name``'s leases (only ``token``'s, if given); return what was removed."""
        args: tuple[object, ...]
        with self._db.transaction() as db:
            where, args = "WHERE name=?", (name,)
            if token is not None:
                where, args = "WHERE name=? AND token=?", (name, token)
            broken = self._leases(db, where, args)
            db.execute(f"DELETE FROM leases {where}", args)
            db.execute(f"DELETE FROM lease_waiters {where}", args)
        return broken

    def clear(self) -> None:
        """Forget every lease (a recovered home: they belonged to the lost machine). The
        token counter stays, so tokens keep growing."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM leases")
            db.execute("DELETE FROM lease_waiters")

    @staticmethod
    def _with_state(
        db: Database, where: str, args: tuple[object, ...], now: float
    ) -> list[tuple[Lease, str]]:
        described = []
        for *columns, pid_start in db.execute(
            f"SELECT {_COLUMNS}, pid_start FROM leases {where} ORDER BY token", args
        ).fetchall():
            lease = Lease(*columns)
            state = "held"
            if lease.deadline < now:
                state = "expired"
            elif lease.host == _HOST and _process_gone(lease.pid, pid_start):
                state = "holder gone"
            described.append((lease, state))
        return described

    def _drop_stale(self, db: Database, name: str, now: float) -> list[Lease]:
        described = self._with_state(db, "WHERE name=?", (name,), now)
        stale = [lease for lease, state in described if state != "held"]
        db.executemany("DELETE FROM leases WHERE token=?", [(s.token,) for s in stale])
        db.execute("DELETE FROM lease_waiters WHERE name=? AND deadline<?", (name, now))
        return stale

    @staticmethod
    def _leases(db: Database, where: str, args: tuple[object, ...]) -> list[Lease]:
        return [
            Lease(*row)
            for row in db.execute(
                f"SELECT {_COLUMNS} FROM leases {where} ORDER BY token", args
            ).fetchall()
        ]

    @staticmethod
    def _next_token(db: Database) -> int:
        db.execute("INSERT INTO lease_tokens VALUES (0, 0) ON CONFLICT DO NOTHING")
        db.execute("UPDATE lease_tokens SET last = last + 1 WHERE id=0")
        return int(db.execute("SELECT last FROM lease_tokens WHERE id=0").fetchone()[0])


def fence_holds(db: Database, token: int) -> bool:
    """Inside a map transaction: the lease ``token`` still stands (not broken, not taken
    over, not past its deadline), so the write may go ahead."""
    row = db.execute(
        "SELECT 1 FROM leases WHERE token=? AND deadline>=?", (token, time.time())
    ).fetchone()
    return row is not None


def check_fence(db: Database, token: int | None) -> None:
    """Raise LeaseLost unless the write under ``token`` may go ahead (no token: the
    write is outside QLOCK, as recovery's are)."""
    if token is not None and not fence_holds(db, token):
        raise LeaseLost(
            f"this run's lease (fencing token {token}) was broken or taken over; "
            "nothing more was written",
            "another run holds the lock now; retry this one",
        )
