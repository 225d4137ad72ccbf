"""The block map: SQLite (WAL) in the node home, or PostgreSQL shared by a node's hosts
(database/), with every row sealed under the map key.

Why SQLite rather than an append-only log: storing one block is one small
transaction that touches a few B-tree pages, so the cost stays flat at a
million blocks and a lookup needs no replay at start-up (see
docs/DESIGN.md and benchmarks/bench_blockmap.py). What stays in clear is
what the database needs to index: random block ids, keyed chunk addresses,
reference counts and aggregate totals. Where replicas live, hashes, keys and
names are only inside the sealed rows, each bound to its table and primary
key through the AEAD's associated data, so a row moved elsewhere fails to open.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from metanode_storage.blockmap import block_rows, changes, seal_parts, totals
from metanode_storage.blockmap.leases import check_fence
from metanode_storage.blockmap.records import BlockRecord, ChunkRecord, Replica, parse_record
from metanode_storage.blockmap.seals_table import SealsTable
from metanode_storage.blockmap.totals import MapStats
from metanode_storage.crypto import aead
from metanode_storage.database import (
    MAP_SCHEMA,
    Database,
    DatabaseMissing,
    DatabaseUrl,
    copy_sqlite,
    drop_unused,
    in_parts,
    open_database,
    translator,
)
from metanode_storage.errors import AmbiguousBlockId, BlockMapDamaged, BlockNotFound

SCHEMA_VERSION = 1
_SET_META = "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
MIN_PREFIX = 6  # shortest block id prefix accepted in place of the whole id
_ID_TEXT = re.compile(r"[0-9a-f-]{1,36}")  # what a block id (or a prefix of one) can look like
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (block_id TEXT PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id BLOB PRIMARY KEY, refcount INTEGER NOT NULL, sealed BLOB NOT NULL);
-- When each block was last checked by an integrity audit (least recent first).
CREATE TABLE IF NOT EXISTS audited (block_id TEXT PRIMARY KEY, at INTEGER NOT NULL);
-- Replicas found missing or corrupt; the row id is a keyed hash of (chunk, provider).
CREATE TABLE IF NOT EXISTS faults (fault_id BLOB PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- How many chunk copies each pack blob still holds; the row id is a keyed hash of
-- (provider, blob key). At zero the pack goes (`rm` deletes it).
CREATE TABLE IF NOT EXISTS packs (pack_id BLOB PRIMARY KEY, live INTEGER NOT NULL);
-- The ML-DSA halves of hybrid proofs, once per batch seal and per key instead of in every
-- block row (blockmap/seal_parts.py); the row id is a keyed hash of what the part belongs to.
CREATE TABLE IF NOT EXISTS seals (
    part_id BLOB PRIMARY KEY, refcount INTEGER NOT NULL, sealed BLOB NOT NULL);
"""
# SQLite numbers rows as they are inserted (rowid), and `ls` lists blocks oldest first by
# it; PostgreSQL gets a column that does the same.
_ROWID = {
    "sqlite": "",
    "postgresql": "ALTER TABLE blocks ADD COLUMN IF NOT EXISTS rowid BIGSERIAL;\n",
}


@dataclass(frozen=True)
class Released:
    """What removing a block freed."""

    chunks: list[ChunkRecord]  # no other block needs them
    empty_packs: list[Replica]  # one copy in each pack that now holds nothing


def _chunk_rows(db: Database, columns: str, chunk_ids: Sequence[bytes]) -> list[Any]:
    """``columns`` of the chunk rows among ``chunk_ids``, a few hundred ids per query."""
    rows: list[Any] = []
    for part, marks in in_parts(chunk_ids):
        query = f"SELECT {columns} FROM chunks WHERE chunk_id IN ({marks})"
        rows += db.execute(query, part).fetchall()
    return rows


class BlockMap:
    def __init__(self, where: Path | DatabaseUrl, map_key: bytes, *, create: bool = False) -> None:
        """Open the map at ``where`` (an SQLite file, or a PostgreSQL database shared by
        the node's hosts). Only `init` and `recover` pass ``create``: a map that went
        missing is an error, never a fresh empty map."""
        self._key = map_key
        self._rows = aead.Sealer(map_key)
        self.where = where
        # The fencing token of the QLOCK lease writes happen under (engine/qlock.py); the
        # lease tables beside the map are LeaseTable's, made when a Node opens it.
        self.fence: Callable[[], int | None] = lambda: None
        try:
            # FULL: a block id is printed only after its map row is on disk.
            self._db = open_database(
                where,
                MAP_SCHEMA,
                synchronous="FULL",
                timeout=_BUSY_TIMEOUT_MS / 1000,
                create=create,
                translate=translator("block map", where, BlockMapDamaged),
            )
            self._seals = SealsTable(self._db, map_key, self._seal, self._unseal)
            dialect = self._db.dialect
            # idempotent; outside any transaction
            self._db.executescript(_SCHEMA + _ROWID[dialect] + changes.tracking_ddl(dialect))
            with self._write():
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                    (str(SCHEMA_VERSION),),
                )
                self._db.executemany(
                    "INSERT INTO totals VALUES (?, 0) ON CONFLICT DO NOTHING",
                    [(t,) for t in totals.NAMES],
                )
                if create:  # empty: every total is exact from the start
                    self._db.execute(
                        "INSERT INTO meta VALUES ('totals_version', ?) ON CONFLICT DO NOTHING",
                        (totals.VERSION,),
                    )
            version = self._db.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()[0]
        except DatabaseMissing as exc:
            raise BlockMapDamaged(
                f"the block map is missing: {exc}",
                "this node cannot work without it; restore the node with "
                "`metanode storage recover` into a new --home",
            ) from None
        if version != str(SCHEMA_VERSION):
            raise BlockMapDamaged(
                f"block map {where} has schema {version}, this tool reads {SCHEMA_VERSION}",
                "upgrade metanode-storage",
            )

    def close(self) -> None:
        self._db.close()

    # -- sealing ---------------------------------------------------------------

    def _seal(self, table: str, row_id: bytes, plain: bytes) -> bytes:
        return self._rows.seal(plain, table.encode() + b"\0" + row_id)

    def _unseal(self, table: str, row_id: bytes, sealed: bytes) -> bytes:
        try:
            return self._rows.open(sealed, table.encode() + b"\0" + row_id)
        except aead.OpenFailed:
            raise BlockMapDamaged(
                f"a {table} row of the block map failed authentication",
                "the map was tampered with or damaged; restore it from a map backup",
            ) from None

    @contextmanager
    def _write(self) -> Iterator[Database]:
        """One write transaction, holding the connection's lock (SQLite errors translated),
        fenced: it goes ahead only while the writer's QLOCK lease stands."""
        with self._db.transaction() as db:
            check_fence(db, self.fence())
            yield db

    def recount_totals(self) -> bool:
        """Count the totals afresh from every row, once, for a map written before they
        were all kept (a scan: a cost paid one time). True if they were recounted."""
        marker = "SELECT value FROM meta WHERE key='totals_version'"
        if (self._db.execute(marker).fetchone() or [None])[0] == totals.VERSION:
            return False
        with self._write() as db:
            blocks = list(self.blocks())
            counted = Counter(totals.of_chunks(self.chunks()))
            counted.update(blocks=len(blocks), logical_bytes=sum(b.size for b in blocks))
            db.execute("DELETE FROM totals")
            db.executemany(
                "INSERT INTO totals VALUES (?, ?)",
                [(name, counted.get(name, 0)) for name in dict.fromkeys([*totals.NAMES, *counted])],
            )
            db.execute(_SET_META, ("totals_version", totals.VERSION))
        return True

    # -- reads -------------------------------------------------------------------

    def get_block(self, block_id: str) -> BlockRecord:
        """The block with this id, or with this unique id prefix (as git and restic take)."""
        # the whole id first: one query (one round trip to a shared map's server)
        if _ID_TEXT.fullmatch(block_id):
            row = self._db.execute(
                "SELECT sealed FROM blocks WHERE block_id=?", (block_id,)
            ).fetchone()
            if row is not None:
                return self._block_of(block_id, row[0])
        full = self.resolve_block_id(block_id)
        row = self._db.execute("SELECT sealed FROM blocks WHERE block_id=?", (full,)).fetchone()
        if row is None:
            raise BlockNotFound(
                f"no block {block_id!r} on this node", "list blocks with `metanode storage ls`"
            )
        return self._block_of(full, row[0])

    def get_blocks(self, block_ids: Sequence[str]) -> list[BlockRecord]:
        """The blocks of ``block_ids`` (whole ids or unique prefixes), in their order: a
        query per few hundred whole ids instead of one per block."""
        rows: dict[str, bytes] = {}
        whole = [b for b in dict.fromkeys(block_ids) if _ID_TEXT.fullmatch(b)]
        for part, marks in in_parts(whole):
            query = f"SELECT block_id, sealed FROM blocks WHERE block_id IN ({marks})"
            rows.update((str(i), sealed) for i, sealed in self._db.execute(query, part))
        return [self._block_of(b, rows[b]) if b in rows else self.get_block(b) for b in block_ids]

    def resolve_block_id(self, text: str) -> str:
        """The full id that ``text`` names: itself, or the one block it is a prefix of
        (at least MIN_PREFIX characters). Text that cannot be an id is simply not found."""
        missing = BlockNotFound(
            f"no block {text!r} on this node", "list blocks with `metanode storage ls`"
        )
        if not _ID_TEXT.fullmatch(text):
            raise missing
        if self._db.execute("SELECT 1 FROM blocks WHERE block_id=?", (text,)).fetchone():
            return text
        if len(text) < MIN_PREFIX:
            raise missing
        upper = text[:-1] + chr(ord(text[-1]) + 1)
        rows = self._db.execute(
            "SELECT block_id FROM blocks WHERE block_id >= ? AND block_id < ? "
            "ORDER BY block_id LIMIT 2",
            (text, upper),
        ).fetchall()
        if len(rows) > 1:
            raise AmbiguousBlockId(
                f"{text!r} is the start of more than one block id", "give more of the id"
            )
        if not rows:
            raise missing
        return str(rows[0][0])

    def _block_of(self, block_id: str, sealed: bytes) -> BlockRecord:
        """A block row opened, its proof whole again."""
        plain = self._unseal("blocks", block_id.encode(), sealed)
        if block_rows.is_v2(plain):
            try:
                return block_rows.decode(block_id, plain, self._seals.batch_seal)
            except ValueError as exc:
                raise BlockMapDamaged(
                    f"block {block_id} has a malformed row: {exc}",
                    "the map was damaged; restore it from a map backup",
                ) from None
        doc = parse_record(plain)
        wanted = seal_parts.labels(doc["proof"])
        if not wanted:
            return BlockRecord.from_doc(doc)
        values = self._seals.hex_values(dict(wanted))
        doc["proof"] = seal_parts.join(doc["proof"], values)
        return BlockRecord.from_doc(doc)

    def get_chunk(self, chunk_id: bytes) -> ChunkRecord | None:
        row = self._db.execute("SELECT sealed FROM chunks WHERE chunk_id=?", (chunk_id,)).fetchone()
        if row is None:
            return None
        return ChunkRecord.from_bytes(self._unseal("chunks", chunk_id, row[0]))

    def get_chunks(self, chunk_ids: Sequence[bytes]) -> dict[bytes, ChunkRecord]:
        """The records the map holds of ``chunk_ids``."""
        return {
            bytes(chunk_id): ChunkRecord.from_bytes(self._unseal("chunks", bytes(chunk_id), sealed))
            for chunk_id, sealed in _chunk_rows(self._db, "chunk_id, sealed", chunk_ids)
        }

    def has_chunk(self, chunk_id: bytes) -> bool:
        return (
            self._db.execute("SELECT 1 FROM chunks WHERE chunk_id=?", (chunk_id,)).fetchone()
            is not None
        )

    def present_chunks(self, chunk_ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``chunk_ids`` the map holds: a few queries for many ids."""
        return self._present_chunks(self._db, chunk_ids)

    def blocks(self) -> Iterator[BlockRecord]:
        """Every block, oldest first. Reads in pages so memory stays flat."""
        last = -1
        while True:
            rows = self._db.execute(
                "SELECT rowid, block_id, sealed FROM blocks"
                " WHERE rowid > ? ORDER BY rowid LIMIT 500",
                (last,),
            ).fetchall()
            if not rows:
                return
            for rowid, block_id, sealed in rows:
                last = rowid
                yield self._block_of(block_id, sealed)

    def chunks(self) -> Iterator[ChunkRecord]:
        last = b""
        while True:
            rows = self._db.execute(
                "SELECT chunk_id, sealed FROM chunks"
                " WHERE chunk_id > ? ORDER BY chunk_id LIMIT 500",
                (last,),
            ).fetchall()
            if not rows:
                return
            for chunk_id, sealed in rows:
                last = chunk_id
                yield ChunkRecord.from_bytes(self._unseal("chunks", chunk_id, sealed))

    def stats(self) -> MapStats:
        return totals.read_stats(self._db)

    # -- writes ------------------------------------------------------------------

    def commit_block(
        self, block: BlockRecord, new_chunks: Iterable[ChunkRecord]
    ) -> list[ChunkRecord]:
        """Add a block and the chunks it introduced, in one transaction.

        A chunk that another run committed in the meantime is referenced, not
        replaced; those spare copies are returned so that the caller can delete
        their blobs once this returns.
        """
        return self.commit_blocks([(block, new_chunks)])

    def commit_blocks(
        self, blocks: Iterable[tuple[BlockRecord, Iterable[ChunkRecord]]]
    ) -> list[ChunkRecord]:
        """Several blocks in one transaction (one fsync): all of them, or none. Each
        (block, new chunks) names the chunks its store wrote; a chunk the map already
        holds is referenced instead, and its offered copy returned as spare."""
        with self._write() as db:
            return self._add_blocks(db, [(b, list(c)) for b, c in blocks])

    def _add_blocks(
        self, db: Database, blocks: Sequence[tuple[BlockRecord, list[ChunkRecord]]]
    ) -> list[ChunkRecord]:
        """A few statements for the whole group, whatever its size."""
        wanted = list(dict.fromkeys(c for block, _ in blocks for c in block.chunk_ids))
        present = self._present_chunks(db, wanted)
        spare: list[ChunkRecord] = []
        added: list[ChunkRecord] = []
        # one more reference per naming block: a batch's blocks share their bundle, so one
        # statement (and one change-log row) per chunk, not one per block
        referenced: Counter[bytes] = Counter()
        for block, new_chunks in blocks:
            offered = {c.chunk_id: c for c in new_chunks}
            for chunk_id in dict.fromkeys(block.chunk_ids):
                record = offered.pop(chunk_id, None)
                if chunk_id in present:
                    referenced[chunk_id] += 1
                    if record is not None:
                        spare.append(record)
                elif record is None:
                    raise BlockMapDamaged(
                        f"chunk {chunk_id.hex()[:12]} of block {block.block_id} vanished "
                        "from the map during the store",
                        "retry the store",
                    )
                else:
                    added.append(record)
                    present.add(chunk_id)
            spare.extend(offered.values())
        db.executemany(
            "INSERT INTO chunks VALUES (?, 1, ?)",
            [(r.chunk_id, self._seal("chunks", r.chunk_id, r.to_bytes())) for r in added],
        )
        db.executemany(
            "UPDATE chunks SET refcount = refcount + ? WHERE chunk_id=?",
            [(count, c) for c, count in referenced.items()],
        )
        self._count_packed(db, [copy for r in added for copy in r.all_copies], +1)
        rows = [self._row_of(b) for b, _ in blocks]  # (plaintext, seal parts)
        self._seals.count(db, (parts for _, parts in rows), +1)
        db.executemany(
            "INSERT INTO blocks VALUES (?, ?)",
            [
                (b.block_id, self._seal("blocks", b.block_id.encode(), plain))
                for (b, _), (plain, _) in zip(blocks, rows, strict=True)
            ],
        )
        totals.add(
            db,
            {
                **totals.of_chunks(added),
                "blocks": len(blocks),
                "logical_bytes": sum(b.size for b, _ in blocks),
            },
        )
        return spare

    @staticmethod
    def _row_of(block: BlockRecord) -> tuple[bytes, Sequence[seal_parts.Part]]:
        """A block row's plaintext and the seal parts it counts on: v2 where it fits
        (blockmap/block_rows.py), else v1 JSON with a hybrid proof's ML-DSA half apart."""
        v2 = block_rows.encode(block)
        if v2 is not None:
            return v2
        kept, parts = seal_parts.split(block.proof_document)
        return replace(block, proof=kept).to_bytes(), parts

    def delete_block(self, block_id: str) -> Released:
        """Remove a block; return the chunks no other block needs (their own blobs may
        go) and the packs that now hold nothing (they may go too)."""
        block = self.get_block(block_id)
        block_id = block.block_id  # the full id, when a prefix was given
        released: list[ChunkRecord] = []
        with self._write() as db:
            if not db.execute("DELETE FROM blocks WHERE block_id=?", (block_id,)).rowcount:
                raise BlockNotFound(f"no block {block_id!r} on this node")
            db.execute("DELETE FROM audited WHERE block_id=?", (block_id,))
            self._seals.count(db, [self._row_of(block)[1]], -1)
            for chunk_id in dict.fromkeys(block.chunk_ids):
                db.execute(
                    "UPDATE chunks SET refcount = refcount - 1 WHERE chunk_id=?", (chunk_id,)
                )
                row = db.execute(
                    "SELECT refcount, sealed FROM chunks WHERE chunk_id=?", (chunk_id,)
                ).fetchone()
                if row is not None and row[0] <= 0:
                    released.append(
                        ChunkRecord.from_bytes(self._unseal("chunks", chunk_id, row[1]))
                    )
                    db.execute("DELETE FROM chunks WHERE chunk_id=?", (chunk_id,))
                    db.executemany(
                        "DELETE FROM faults WHERE fault_id=?",
                        [(self._fault_id(chunk_id, r.provider),) for r in released[-1].replicas],
                    )
            emptied = self._count_packed(db, [c for r in released for c in r.all_copies], -1)
            totals.add(
                db, {**totals.of_chunks(released, -1), "blocks": -1, "logical_bytes": -block.size}
            )
        return Released(released, emptied)

    # -- replica faults ------------------------------------------------------------

    def _count_packed(self, db: Database, copies: Iterable[Replica], delta: int) -> list[Replica]:
        """Add ``delta`` to the live count of each packed copy's pack (a few statements,
        however many packs); one copy of each pack that now holds nothing (its row is
        gone, and the blob may be deleted)."""
        by_pack: dict[tuple[str, str], tuple[Replica, int]] = {}
        for copy in copies:
            if copy.in_pack:
                count = by_pack.get((copy.provider, copy.key), (copy, 0))[1]
                by_pack[(copy.provider, copy.key)] = (copy, count + delta)
        packs = {
            aead.keyed_hash(self._key, b"pack", provider.encode(), key.encode()): (copy, change)
            for (provider, key), (copy, change) in by_pack.items()
        }
        db.executemany(
            "INSERT INTO packs VALUES (?, ?) "
            "ON CONFLICT(pack_id) DO UPDATE SET live = packs.live + excluded.live",
            [(pack_id, change) for pack_id, (_, change) in packs.items()],
        )
        gone = set(drop_unused(db, "packs", "pack_id", "live", list(packs)))
        return [copy for pack_id, (copy, _) in packs.items() if pack_id in gone]

    def _present_chunks(self, db: Database, chunk_ids: Sequence[bytes]) -> set[bytes]:
        """Which of ``chunk_ids`` the map holds."""
        return {bytes(row[0]) for row in _chunk_rows(db, "chunk_id", chunk_ids)}

    def _fault_id(self, chunk_id: bytes, provider: str) -> bytes:
        return aead.keyed_hash(self._key, b"fault", chunk_id, provider.encode())

    def record_fault(self, chunk_id: bytes, provider: str, kind: str) -> None:
        """Remember that a replica was found missing or corrupt (for status and repair)."""
        fault_id = self._fault_id(chunk_id, provider)
        body = json.dumps(
            {
                "chunk_id": chunk_id.hex(),
                "provider": provider,
                "kind": kind,
                "seen_at": int(time.time()),
            }
        ).encode()
        with self._write() as db:
            if db.execute("SELECT 1 FROM chunks WHERE chunk_id=?", (chunk_id,)).fetchone():
                db.execute(
                    "INSERT INTO faults VALUES (?, ?) "
                    "ON CONFLICT (fault_id) DO UPDATE SET sealed = excluded.sealed",
                    (fault_id, self._seal("faults", fault_id, body)),
                )

    def clear_fault(self, chunk_id: bytes, provider: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM faults WHERE fault_id=?", (self._fault_id(chunk_id, provider),))

    # -- chunk keys and integrity audits ----------------------------------------------------

    def replace_chunks(self, records: list[ChunkRecord]) -> None:
        """Rewrite chunk rows in place (same chunks, new wrapped keys); counts do not change."""
        with self._write() as db:
            for record in records:
                updated = db.execute(
                    "UPDATE chunks SET sealed=? WHERE chunk_id=?",
                    (self._seal("chunks", record.chunk_id, record.to_bytes()), record.chunk_id),
                ).rowcount
                if not updated:
                    raise BlockMapDamaged(f"chunk {record.chunk_id.hex()[:12]} vanished")

    # -- change tracking, for incremental backups ----------------------------------------

    def change_mark(self) -> int:
        """The newest change's sequence number (0 with none)."""
        return changes.newest(self._db)

    def content_change_mark(self) -> int:
        """The newest change to what the node stores: not counting the bookkeeping of
        reads (which blocks were audited, which replicas were found faulty), which the
        next backup carries without a read having to upload one."""
        return changes.newest_to_content(self._db)

    def changes_since(self, mark: int) -> tuple[int, list[changes.Change]]:
        """(new mark, [(table, key, the row now or None if deleted)]) for every row changed
        after ``mark``, consistent with each other."""
        return changes.since(self._db, mark)

    def copy_to(self, target: Path) -> None:
        """A consistent copy of the map as a new SQLite file at ``target`` (what a map
        backup's snapshot carries), from either backend; its change log ends at the
        source's newest change, so segments after the snapshot follow on."""
        if isinstance(self.where, Path):
            copy_sqlite(self._db, target)
            return
        copy = BlockMap(target, self._key, create=True)
        try:
            newest = self.copy_into(copy)
            if newest:
                copy._db.execute("INSERT INTO changes VALUES (?, 'meta', 'copy')", (newest,))
        finally:
            copy.close()

    def copy_into(self, target: BlockMap) -> int:
        """Every row into ``target``, a new map under the same key (recovery into another
        backend), as one consistent state; the source's newest change number."""
        return changes.copy_rows(self._db, target._db)

    def forget_changes(self, upto: int) -> None:
        """Drop change records every backup has carried (up to and including ``upto``)."""
        with self._write() as db:
            changes.forget(db, upto)

    def apply_changes(self, changed: Iterable[changes.Change]) -> None:
        """Replay rows from a backup (recovery): upsert each row, or delete it."""
        with self._write() as db:
            changes.replay(db, changed)

    def audit_coverage(self) -> tuple[int, int | None]:
        """(blocks never checked by an integrity audit, when the least recently checked
        of the others was checked): how old `status`'s integrity figure is."""
        checked, oldest = self._db.execute(
            "SELECT COUNT(*), MIN(a.at) FROM audited a JOIN blocks b ON a.block_id = b.block_id"
        ).fetchone()
        total = self._db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        return int(total) - int(checked), None if oldest is None else int(oldest)

    def least_recently_audited(self, count: int) -> list[str]:
        """Block ids never audited first, then the longest ago; ties in random order.
        Daily samples of N therefore cover every block within blocks/N days."""
        rows = self._db.execute(
            "SELECT b.block_id FROM blocks b LEFT JOIN audited a ON a.block_id = b.block_id "
            "ORDER BY COALESCE(a.at, 0), random() LIMIT ?",
            (count,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def mark_audited(self, block_ids: list[str]) -> None:
        now = int(time.time())
        with self._write() as db:
            db.executemany(
                "INSERT INTO audited VALUES (?, ?) "
                "ON CONFLICT (block_id) DO UPDATE SET at = excluded.at",
                [(b, now) for b in block_ids],
            )

    # -- repair ---------------------------------------------------------------------------

    def faults(self) -> list[tuple[bytes, str, str]]:
        """(chunk id, provider, kind) of every replica known to be missing or corrupt."""
        found = []
        for fault_id, sealed in self._db.execute("SELECT fault_id, sealed FROM faults"):
            doc = json.loads(self._unseal("faults", fault_id, sealed))
            found.append((bytes.fromhex(doc["chunk_id"]), doc["provider"], doc["kind"]))
        return found

    def update_chunks(self, changes: Sequence[tuple[ChunkRecord, ChunkRecord]]) -> list[Replica]:
        """Swap chunks' replica lists (after a repair or a repack), in one transaction,
        keeping the totals right and clearing the faults of replicas that are gone; one
        copy of each pack that no longer holds a live copy (its blob may be deleted)."""
        with self._write() as db:
            return [e for old, new in changes for e in self._update_chunk(db, old, new)]

    def _update_chunk(self, db: Database, old: ChunkRecord, new: ChunkRecord) -> list[Replica]:
        updated = db.execute(
            "UPDATE chunks SET sealed=? WHERE chunk_id=?",
            (self._seal("chunks", new.chunk_id, new.to_bytes()), new.chunk_id),
        ).rowcount
        if not updated:
            raise BlockMapDamaged(f"chunk {new.chunk_id.hex()[:12]} vanished during repair")
        emptied = self._count_packed(db, [c for c in old.all_copies if c not in new.all_copies], -1)
        self._count_packed(db, [c for c in new.all_copies if c not in old.all_copies], +1)
        kept = {r.provider for r in new.replicas}
        db.executemany(
            "DELETE FROM faults WHERE fault_id=?",
            [
                (self._fault_id(old.chunk_id, r.provider),)
                for r in old.replicas
                if r.provider not in kept or r not in new.replicas
            ],
        )
        change = Counter(totals.of_chunks([new]))
        change.update(totals.of_chunks([old], -1))
        totals.add(db, change)
        return emptied
