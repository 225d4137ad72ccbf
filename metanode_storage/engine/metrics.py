"""Counters the engine keeps and persists, for `distributed metrics` and `/metrics`.

Every figure is measured: a throughput is operations (or bytes) divided by
the seconds those operations took, summed over every run since the node was
made. A figure with nothing measured yet is None, and says so when shown.
Kept in ``metrics.sqlite`` (WAL, synchronous=NORMAL: a crash may lose the
last few increments, never the file). Metrics are housekeeping: a damaged or
unreadable file costs a warning and the counting, never the command.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from metanode_storage.blockmap.totals import MapStats
from metanode_storage.database.sqlite import is_disk_full

COUNTERS = (
    "store_ops",
    "store_bytes",
    "store_seconds",
    "retrieve_ops",
    "retrieve_bytes",
    "retrieve_seconds",
    "proofs",
    "proof_seconds",
    "failovers",
    "repairs",
    "housekeeping_failures",
)
_DAY = 86_400
log = logging.getLogger("metanode.metrics")


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if seconds > 0 else None


@dataclass(frozen=True)
class MetricsSnapshot:
    counters: dict[str, float]
    failovers_24h: int

    @property
    def storage_ops_per_second(self) -> float | None:
        return _rate(self.counters["store_ops"], self.counters["store_seconds"])

    @property
    def storage_mb_per_second(self) -> float | None:
        return _rate(self.counters["store_bytes"] / 1e6, self.counters["store_seconds"])

    @property
    def retrieval_ops_per_second(self) -> float | None:
        return _rate(self.counters["retrieve_ops"], self.counters["retrieve_seconds"])

    @property
    def retrieval_mb_per_second(self) -> float | None:
        return _rate(self.counters["retrieve_bytes"] / 1e6, self.counters["retrieve_seconds"])

    @property
    def proofs_per_second(self) -> float | None:
        return _rate(self.counters["proofs"], self.counters["proof_seconds"])

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "storage_ops_per_second": self.storage_ops_per_second,
            "storage_mb_per_second": self.storage_mb_per_second,
            "retrieval_ops_per_second": self.retrieval_ops_per_second,
            "retrieval_mb_per_second": self.retrieval_mb_per_second,
            "proofs_per_second": self.proofs_per_second,
        }


@dataclass(frozen=True)
class StorageEfficiency:
    """Where the bytes on the providers come from, from the map's totals (kept exact by
    every commit): what blocks hold, less dedup, through compression (padding and seals
    included), times the replicas or erasure-code fragments."""

    logical_bytes: int  # the blocks' sizes
    unique_bytes: int  # after dedup: each distinct chunk once
    copy_bytes: int  # one sealed copy of each distinct chunk
    stored_bytes: int  # every piece on every provider

    @classmethod
    def of(cls, stats: MapStats) -> StorageEfficiency:
        return cls(stats.logical_bytes, stats.unique_bytes, stats.copy_bytes, stats.stored_bytes)

    @property
    def dedup_saved_bytes(self) -> int:
        return self.logical_bytes - self.unique_bytes

    @property
    def compression_ratio(self) -> float | None:
        """Plaintext bytes per sealed byte of one copy (above 1: compression won)."""
        return _rate(self.unique_bytes, self.copy_bytes)

    @property
    def redundancy_overhead(self) -> float | None:
        """Stored bytes per byte of one copy: 3.0 for three replicas, 1.67 for ec:3+2."""
        return _rate(self.stored_bytes, self.copy_bytes)

    @property
    def stored_per_logical(self) -> float | None:
        return _rate(self.stored_bytes, self.logical_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "dedup_saved_bytes": self.dedup_saved_bytes,
            "compression_ratio": self.compression_ratio,
            "redundancy_overhead": self.redundancy_overhead,
            "stored_per_logical": self.stored_per_logical,
        }


class Metrics:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(
                "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL);"
                "CREATE TABLE IF NOT EXISTS failovers (at REAL NOT NULL);"
            )
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        """Stop counting for this run, with one warning; the command goes on."""
        full = is_disk_full(exc)
        log.warning(
            "metrics are not being recorded: %s cannot be used (%s); %s",
            self.path,
            exc,
            "free space on its disk" if full else "move it aside to start counting afresh",
        )
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def add(self, **amounts: float) -> None:
        unknown = set(amounts) - set(COUNTERS)
        if unknown:
            raise KeyError(unknown.pop())  # a bug in the caller, not a damaged file
        with self._lock:
            if self._db is None:
                return
            try:
                self._add(self._db, amounts)
            except (sqlite3.Error, UnicodeDecodeError) as exc:
                self._give_up(exc)

    @staticmethod
    def _add(db: sqlite3.Connection, amounts: dict[str, float]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for name, amount in amounts.items():
                db.execute(
                    "INSERT INTO counters VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, amount),
                )
            if amounts.get("failovers"):
                now = time.time()
                db.execute("INSERT INTO failovers VALUES (?)", (now,))
                db.execute("DELETE FROM failovers WHERE at < ?", (now - _DAY,))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def snapshot(self) -> MetricsSnapshot:
        """What was measured; all zero (shown as "not measured") when the file is unusable."""
        stored: dict[str, float] = {}
        recent = 0
        with self._lock:
            if self._db is not None:
                try:
                    stored = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
                    recent = self._db.execute(
                        "SELECT COUNT(*) FROM failovers WHERE at >= ?", (time.time() - _DAY,)
                    ).fetchone()[0]
                except (sqlite3.Error, UnicodeDecodeError) as exc:
                    self._give_up(exc)
        return MetricsSnapshot({n: float(stored.get(n, 0.0)) for n in COUNTERS}, int(recent))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None
