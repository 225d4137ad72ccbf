"""SQLite connections that several threads of one process can share safely.

The service runs engine calls on worker threads against one node. SQLite
itself is built serialized here, but a transaction is a sequence of
statements on one connection, and another thread's statement must not land
in the middle of it. ``SharedConnection`` holds a re-entrant lock for every
statement and for whole transactions (``transaction()``), and returns fully
fetched results so that no cursor outlives its lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class Rows:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.rows: list[Any] = cursor.fetchall()
        self.rowcount = cursor.rowcount

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


class SharedConnection:
    def __init__(self, path: Path, *, synchronous: str = "FULL", timeout: float = 30.0) -> None:
        self.lock = threading.RLock()
        self._db = sqlite3.connect(
            path, isolation_level=None, timeout=timeout, check_same_thread=False
        )
        self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")

    def execute(self, sql: str, args: Any = ()) -> Rows:
        with self.lock:
            return Rows(self._db.execute(sql, args))

    def executemany(self, sql: str, rows: Any) -> Rows:
        with self.lock:
            return Rows(self._db.executemany(sql, rows))

    def executescript(self, script: str) -> None:
        with self.lock:
            self._db.executescript(script)

    @contextmanager
    def transaction(self) -> Iterator[SharedConnection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), with the lock held throughout."""
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._db.close()
