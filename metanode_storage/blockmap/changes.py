"""The block map's change log, and copies of every row.

Triggers record which rows changed, in order, so that a map backup uploads the change and
not the map (engine/backup_log.py); backups prune the log, and recovery replays what the
backups carried. A snapshot (or a recovery into another backend) copies every row, a page
at a time. The stores' own reads and writes stay in blockmap/store.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from metanode_storage.database import Database
from metanode_storage.errors import BlockMapDamaged

# (table, primary key, the row now or None if it was deleted)
Change = tuple[str, Any, list[Any] | None]

# Every table a backup must carry, with its primary key (triggers record that key).
TRACKED = {
    "meta": "key",
    "blocks": "block_id",
    "chunks": "chunk_id",
    "audited": "block_id",
    "faults": "fault_id",
    "totals": "name",
    "packs": "pack_id",
    "seals": "part_id",
}
# Every table's columns as the stores read and write them (PostgreSQL's blocks table has
# one more, its rowid, that backups do not carry).
COLUMNS = {
    "meta": "key, value",
    "blocks": "block_id, sealed",
    "chunks": "chunk_id, refcount, sealed",
    "audited": "block_id, at",
    "faults": "fault_id, sealed",
    "totals": "name, value",
    "packs": "pack_id, live",
    "seals": "part_id, refcount, sealed",
}
# The key keeps its own type in SQLite; PostgreSQL needs one, so byte keys are kept there
# as hex (_change_key).
_CHANGES = {
    "sqlite": "CREATE TABLE IF NOT EXISTS changes ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key NOT NULL);\n",
    "postgresql": "CREATE TABLE IF NOT EXISTS changes ("
    "seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, key TEXT NOT NULL);\n",
}
_BYTE_KEYS = frozenset({"chunks", "faults", "packs", "seals"})  # tables keyed by bytes
_TRIGGERS = {
    "sqlite": "".join(
        f"CREATE TRIGGER IF NOT EXISTS track_{table}_{event} AFTER {event} ON {table} BEGIN "
        f"INSERT INTO changes (tbl, key) VALUES ('{table}', {row}.{pk}); END;\n"
        for table, pk in TRACKED.items()
        for event, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD"))
    ),
    "postgresql": "".join(
        f"CREATE OR REPLACE FUNCTION track_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN IF TG_OP = 'DELETE' THEN "
        f"INSERT INTO changes (tbl, key) VALUES ('{table}', {key.format(row='OLD')}); "
        f"ELSE INSERT INTO changes (tbl, key) VALUES ('{table}', {key.format(row='NEW')}); "
        f"END IF; RETURN NULL; END $$;\n"
        f"CREATE OR REPLACE TRIGGER track_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION track_{table}();\n"
        for table, pk in TRACKED.items()
        for key in [f"encode({{row}}.{pk}, 'hex')" if table in _BYTE_KEYS else f"{{row}}.{pk}"]
    ),
}


def tracking_ddl(dialect: str) -> str:
    """The change log's table and the triggers that fill it (idempotent)."""
    return _CHANGES[dialect] + _TRIGGERS[dialect]


def newest(db: Database) -> int:
    """The newest change's sequence number (0 with none)."""
    return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])


def newest_to_content(db: Database) -> int:
    """The newest change to what the node stores: not counting the bookkeeping of reads
    (which blocks were audited, which replicas were found faulty)."""
    row = db.execute(  # newest first: stops at the first match
        "SELECT seq FROM changes WHERE tbl NOT IN ('audited', 'faults') ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return int(row[0]) if row else 0


def since(db: Database, mark: int) -> tuple[int, list[Change]]:
    """(new mark, every row changed after ``mark``), read in one snapshot so the rows are
    consistent with each other."""
    with db.snapshot() as view:
        upto = newest(view)
        keys = view.execute(
            "SELECT tbl, key, MAX(seq) FROM changes WHERE seq > ? AND seq <= ? "
            "GROUP BY tbl, key ORDER BY 3",
            (mark, upto),
        ).fetchall()
        changed: list[Change] = []
        for table, stored_key, _ in keys:
            key = _change_key(view, str(table), stored_key)
            row = view.execute(
                f"SELECT {COLUMNS[table]} FROM {table} WHERE {TRACKED[table]} = ?", (key,)
            ).fetchone()
            changed.append((str(table), key, None if row is None else list(row)))
    return upto, changed


def _change_key(db: Database, table: str, stored: Any) -> Any:
    """A changed row's key as its table holds it (PostgreSQL's log keeps bytes as hex)."""
    if db.dialect == "postgresql" and table in _BYTE_KEYS:
        return bytes.fromhex(stored)
    return stored


def forget(db: Database, upto: int) -> None:
    """Drop the records of changes up to and including ``upto`` (in a write transaction)."""
    db.execute("DELETE FROM changes WHERE seq <= ?", (upto,))


def replay(db: Database, changed: Iterable[Change]) -> None:
    """Rows from a backup (recovery), in a write transaction: upsert each, or delete it;
    the map then starts a history of its own."""
    for table, key, row in changed:
        if table not in TRACKED:
            raise BlockMapDamaged(f"a map backup names unknown table {table!r}")
        db.execute(f"DELETE FROM {table} WHERE {TRACKED[table]} = ?", (key,))
        if row is not None:
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", row)
    db.execute("DELETE FROM changes")


def copy_rows(source: Database, target: Database) -> int:
    """Every row of ``source`` into ``target`` (a new map under the same key), as one
    consistent state; the source's newest change number. The copy starts a history of
    its own."""
    with source.snapshot() as view, target.transaction() as out:
        for table, pk in TRACKED.items():
            out.execute(f"DELETE FROM {table}")
            for page in _pages(view, table, pk):
                marks = ", ".join("?" * len(page[0]))
                out.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", page)
        out.execute("DELETE FROM changes")
        return newest(view)


def _pages(db: Database, table: str, pk: str, size: int = 5000) -> Iterator[list[Any]]:
    """Every row of ``table`` in pages of ``size``, in key order (memory stays flat)."""
    columns = COLUMNS[table]
    page = db.execute(f"SELECT {columns} FROM {table} ORDER BY {pk} LIMIT {size}").fetchall()
    while page:
        yield page
        page = db.execute(
            f"SELECT {columns} FROM {table} WHERE {pk} > ? ORDER BY {pk} LIMIT {size}",
            (page[-1][0],),
        ).fetchall()
