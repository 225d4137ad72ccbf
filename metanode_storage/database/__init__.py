"""Where a node's shared state lives, behind one connection interface.

The block map, the audit trail and the QLOCK lease rows are written through a
``Database``: SQLite files in the node home (the embedded default), or one
PostgreSQL database that several hosts of the same node share
(``distributed init --map postgresql://...``). The stores write one SQL
dialect, the common ground of both (``?`` parameters, ``ON CONFLICT`` upserts);
what differs (column types in DDL, change-tracking triggers) the stores ask of
``Database.dialect``. Both backends give a write transaction the database to
itself, so a store's read-then-write logic is correct on either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from metanode_storage.database.sqlite import (
    DatabaseMissing,
    Rows,
    SharedConnection,
    Translate,
    copy_sqlite,
    describe,
    translator,
)
from metanode_storage.errors import InvalidSetting

__all__ = [
    "MAP_SCHEMA",
    "TRAIL_SCHEMA",
    "Database",
    "DatabaseMissing",
    "DatabaseUrl",
    "Rows",
    "Translate",
    "copy_sqlite",
    "describe",
    "drop_unused",
    "in_parts",
    "open_database",
    "translator",
]

SCHEMES = ("postgresql", "postgres")
# In a PostgreSQL database, each store's schema (SQLite keeps each in a file of its own).
MAP_SCHEMA = "metanode_map"  # the block map and, beside it, the QLOCK lease rows
TRAIL_SCHEMA = "metanode_trail"  # the audit trail


class Database(Protocol):
    dialect: str  # "sqlite" or "postgresql"

    def execute(self, sql: str, args: Any = ()) -> Rows: ...
    def executemany(self, sql: str, rows: Any) -> Rows: ...
    def executescript(self, script: str) -> None: ...
    def transaction(self) -> AbstractContextManager[Database]: ...
    def snapshot(self) -> AbstractContextManager[Database]: ...
    def close(self) -> None: ...


class DatabaseUrl(str):
    """A PostgreSQL connection URL, checked: never a password in it (it would be written
    to config.toml and shown by `status`); libpq reads one from PGPASSWORD or ~/.pgpass."""

    __slots__ = ()

    def __new__(cls, text: str) -> DatabaseUrl:
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 (raises on a port that is not a number)
        except ValueError:
            raise InvalidSetting(f"--map {text!r} is not a URL", _URL_HINT) from None
        if parts.scheme not in SCHEMES or not parts.hostname or not parts.path.strip("/"):
            raise InvalidSetting("--map takes postgresql://USER@HOST[:PORT]/DATABASE", _URL_HINT)
        if parts.password is not None:
            raise InvalidSetting(
                "--map must not carry a password: it would be stored in config.toml",
                "give it in PGPASSWORD or ~/.pgpass (libpq reads both)",
            )
        return super().__new__(cls, text)

    @staticmethod
    def is_url(text: str) -> bool:
        return urlsplit(text).scheme in SCHEMES


_URL_HINT = "for example postgresql://metanode@db.internal:5432/metanode"


def open_database(
    where: Path | DatabaseUrl,
    schema: str,
    *,
    create: bool,
    translate: Translate,
    synchronous: str = "FULL",
    timeout: float = 30.0,
) -> Database:
    """The database at ``where``: an SQLite file, or ``schema`` (one per store: the map
    and its leases, the trail) inside a PostgreSQL database. Only with ``create`` may a
    new one come into being; a missing one raises DatabaseMissing."""
    if isinstance(where, DatabaseUrl):
        from metanode_storage.database.postgres import PostgresConnection

        return PostgresConnection(
            where, schema, create=create, translate=translate, timeout=timeout
        )
    return SharedConnection(
        where, synchronous=synchronous, timeout=timeout, create=create, translate=translate
    )


def in_parts(ids: Sequence[Any], size: int = 500) -> Iterator[tuple[tuple[Any, ...], str]]:
    """``ids`` a few hundred at a time, each part with its ``IN (?, ...)`` placeholders."""
    for start in range(0, len(ids), size):
        part = tuple(ids[start : start + size])
        yield part, ",".join("?" * len(part))


def drop_unused(
    db: Database, table: str, key: str, count: str, ids: Sequence[bytes]
) -> list[bytes]:
    """Delete the rows among ``ids`` whose ``count`` fell to zero; their ids. A few
    statements for any number of rows (each statement is a round trip to a shared map)."""
    gone: list[bytes] = []
    for part, marks in in_parts(ids):
        where = f"WHERE {count} <= 0 AND {key} IN ({marks})"
        found = [bytes(row[0]) for row in db.execute(f"SELECT {key} FROM {table} {where}", part)]
        if found:
            db.execute(f"DELETE FROM {table} {where}", part)
            gone += found
    return gone
