"""The embedded backend: SQLite connections that several threads of one process can
share safely.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from metanode_storage.errors import LocalStateError, NodeBusy


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


class DatabaseMissing(Exception):
    """The database file is absent or empty, and the caller did not ask to create it."""


def describe(exc: Exception) -> str:
    """A short, one-line account of an SQLite error: its code name and the start of its
    message, which can quote stored bytes (never shown whole, never over lines)."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    shown = "".join(c if c.isprintable() else "?" for c in first[:80])
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    return f"{name}: {shown}" if shown else name


def is_disk_full(exc: Exception) -> bool:
    """SQLite could not write because the disk (or its page limit) is full: nothing is
    wrong with the file itself."""
    return getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"


# A damaged file can also make SQLite's own error text undecodable.
_DAMAGE = (sqlite3.DatabaseError, UnicodeDecodeError)
Translate = Callable[[Exception], Exception]


def translator(what: str, path: Path | str, damaged: Callable[[str, str], Exception]) -> Translate:
    """The usual translation for one of the node's databases: a lock held by another run
    is NodeBusy (exit 8); anything else means the file is damaged (``damaged``)."""

    def translate(exc: Exception) -> Exception:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            return NodeBusy(f"the {what} is locked by another run", "retry in a moment")
        if is_disk_full(exc):  # the file is fine
            return LocalStateError(
                f"the disk holding the {what} {path} is full; nothing was written",
                "free space on it and run the command again",
            )
        return damaged(
            f"{what} {path} cannot be used: {describe(exc)}",
            "restore the node from its map backup with `metanode storage recover` into a "
            "new --home",
        )

    return translate


def _unchanged(exc: Exception) -> Exception:
    return exc


class SharedConnection:
    dialect = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        timeout: float = 30.0,
        create: bool = False,
        translate: Translate = _unchanged,
    ) -> None:
        """Open ``path``; only with ``create`` may a new database come into being.

        SQLite silently makes a fresh database from a missing or 0-byte file;
        for the map and the trail that would pass an empty state off as the real one.
        ``translate`` turns any SQLite error (a damaged file, a lock) into the
        owner's own error, at every call, so no caller can forget to.
        """
        if not create:
            try:
                if path.stat().st_size == 0:
                    raise DatabaseMissing(f"{path} is empty")
            except FileNotFoundError:
                raise DatabaseMissing(f"{path} does not exist") from None
            except NotADirectoryError:
                raise DatabaseMissing(f"{path} does not exist") from None
        self.lock = threading.RLock()
        self._translate = translate
        # mode=rw: even if the file vanishes between the check and here, nothing is created
        uri = f"{path.absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
        try:
            self._db = sqlite3.connect(
                uri, isolation_level=None, timeout=timeout, check_same_thread=False, uri=True
            )
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
        except _DAMAGE as exc:
            raise translate(exc) from exc

    def execute(self, sql: str, args: Any = ()) -> Rows:
        with self.lock:
            try:
                return Rows(self._db.execute(sql, args))
            except _DAMAGE as exc:
                raise self._translate(exc) from exc

    def executemany(self, sql: str, rows: Any) -> Rows:
        with self.lock:
            try:
                return Rows(self._db.executemany(sql, rows))
            except _DAMAGE as exc:
                raise self._translate(exc) from exc

    def executescript(self, script: str) -> None:
        with self.lock:
            try:
                self._db.executescript(script)
            except _DAMAGE as exc:
                raise self._translate(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[SharedConnection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), with the lock held throughout."""
        with self.lock:
            self.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                with suppress(sqlite3.Error):  # a damaged file may refuse even this
                    self._db.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[SharedConnection]:
        """A read transaction: every query inside sees the same state of the database,
        whatever other connections commit meanwhile (WAL readers see one snapshot)."""
        with self.lock:
            self.execute("BEGIN DEFERRED")
            try:
                yield self
            finally:
                with suppress(sqlite3.Error):
                    self._db.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._db.close()


def copy_sqlite(source: object, target: Path) -> None:
    """A consistent copy of an SQLite database (``source`` a SharedConnection) into a
    new file, while others may write to it (SQLite's online backup)."""
    assert isinstance(source, SharedConnection)
    copy = sqlite3.connect(target)
    try:
        with source.lock:
            source._db.backup(copy)
    finally:
        copy.close()
