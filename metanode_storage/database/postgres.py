"""The shared backend: one PostgreSQL database that every host of a node writes to.

Each store keeps its tables in a schema of its own (``metanode_map`` holds the map
and the lease rows, ``metanode_trail`` the audit trail), selected by the
connection's ``search_path``, so the stores' SQL names tables exactly as it does
in SQLite.

A write transaction first takes a transaction-scoped advisory lock on its schema:
writers of one store run one at a time across every host, as SQLite's
``BEGIN IMMEDIATE`` makes them on one machine. That is what keeps the stores'
read-then-write steps right (a chunk looked up, then inserted or referenced; the
trail's frontier read, then extended) and gives the trail and the change log one
total order: a sequence value is drawn and committed under the lock, so values
commit in the order they were drawn. Reads run outside any transaction and see
what is committed.

A lost connection is reported as MapDatabaseUnavailable (nothing half-done was
committed: the transaction died with the connection) and the next call connects
again, so a run resumes as soon as the server is back.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from hashlib import sha256
from typing import Any

from metanode_storage.database.sqlite import DatabaseMissing, Rows, Translate
from metanode_storage.errors import ConfigError, MapDatabaseUnavailable, NodeBusy

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError:  # the optional extra is not installed
    psycopg = None  # type: ignore[assignment]

# SQLite DDL into PostgreSQL's: the stores' schemas are written once, for SQLite.
_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    # byte order, as SQLite compares: block id prefixes are looked up as ranges
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
)


def postgres_ddl(script: str) -> str:
    for pattern, replacement in _TYPES:
        script = pattern.sub(replacement, script)
    return script


class _Rows(Rows):
    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount


class PostgresConnection:
    dialect = "postgresql"

    def __init__(
        self, url: str, schema: str, *, create: bool, translate: Translate, timeout: float
    ) -> None:
        if psycopg is None:
            raise ConfigError(
                "this node's map is in PostgreSQL, and the PostgreSQL driver is not installed",
                "pip install 'metanode-storage[postgres]'",
            )
        if not re.fullmatch(r"[a-z_]+", schema):
            raise ValueError(f"schema name {schema!r}")
        self.lock = threading.RLock()
        self._url = url
        self._schema = schema
        self._timeout = timeout
        self._translate = translate
        # the advisory lock that makes this schema's writers take turns
        self._lock_key = int.from_bytes(sha256(schema.encode()).digest()[:8], "big", signed=True)
        self._conn: Any = None
        with self.lock:
            self._connect()
            exists = self._run(
                "SELECT 1 FROM information_schema.schemata WHERE schema_name=%s", (schema,)
            ).rows
            if not exists:
                if not create:
                    self.close()
                    raise DatabaseMissing(f"the database has no {schema} schema")
                with self.transaction():  # two hosts' first runs must not race to create it
                    self._run(f"CREATE SCHEMA IF NOT EXISTS {schema}")

    def _connect(self) -> None:
        try:
            self._conn = psycopg.connect(
                self._url,
                autocommit=True,  # transactions are BEGIN ... COMMIT, as with SQLite
                connect_timeout=max(1, int(self._timeout)),
                # a writer waits for the schema's lock at most this long (NodeBusy after)
                options=f"-c search_path={self._schema} "
                f"-c lock_timeout={int(self._timeout * 1000)}",
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> MapDatabaseUnavailable:
        host = psycopg.conninfo.conninfo_to_dict(self._url).get("host", "?")
        kind = type(exc).__name__
        return MapDatabaseUnavailable(
            f"the map database at {host} did not answer ({kind})",
            "nothing unfinished was listed; retry when the PostgreSQL server is back",
        )

    def _run(self, sql: str, args: Any = (), many: bool = False) -> Rows:
        """One statement, its errors translated: a lost server is MapDatabaseUnavailable
        (and the next call reconnects), a lock wait past the timeout NodeBusy."""
        with self.lock:
            if self._conn is None or self._conn.closed:
                self._connect()
            try:
                with self._conn.cursor() as cursor:
                    if many:
                        cursor.executemany(sql, args)
                    else:
                        cursor.execute(sql, args or None)
                    rows = cursor.fetchall() if cursor.description is not None else []
                    return _Rows(rows, cursor.rowcount)
            except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected):
                raise NodeBusy(
                    "the map database is locked by another host's run", "retry in a moment"
                ) from None
            except psycopg.OperationalError as exc:
                if self._conn.broken or self._conn.closed:
                    raise self._unavailable(exc) from None
                raise self._translate(exc) from exc
            except psycopg.Error as exc:
                raise self._translate(exc) from exc

    @staticmethod
    def _placeholders(sql: str) -> str:
        # The stores write SQLite's ``?``; none of their SQL holds a literal % or ?.
        assert "%" not in sql, sql
        return sql.replace("?", "%s")

    def execute(self, sql: str, args: Any = ()) -> Rows:
        return self._run(self._placeholders(sql), tuple(args))

    def executemany(self, sql: str, rows: Any) -> Rows:
        rows = [tuple(r) for r in rows]
        if not rows:
            return _Rows([], 0)
        return self._run(self._placeholders(sql), rows, many=True)

    def executescript(self, script: str) -> None:
        """DDL written for SQLite, in PostgreSQL's types; under the write lock, so that
        hosts opening the node at once do not race to create the same tables."""
        with self.transaction():
            self._run(postgres_ddl(script))

    @contextmanager
    def transaction(self) -> Iterator[PostgresConnection]:
        with self.lock:
            self._run("BEGIN")
            try:
                self._run("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                yield self
            except BaseException:
                self._abandon()
                raise
            if self._conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                # a statement failed and its error was caught: COMMIT would quietly roll
                # back, and the caller take it for done
                self._abandon()
                raise self._translate(RuntimeError("a statement of the transaction failed"))
            self._run("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[PostgresConnection]:
        """A read transaction that sees one state of the database throughout."""
        with self.lock:
            self._run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield self
            finally:
                self._abandon()

    def _abandon(self) -> None:
        with suppress(Exception):  # a lost connection took the transaction with it
            if not self._conn.closed:
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self.lock:
            if self._conn is not None:
                self._conn.close()
