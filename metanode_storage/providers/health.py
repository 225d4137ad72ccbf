"""Provider health: the seed's Active, Degraded and Offline, from measured outcomes.

The state follows the latest outcome: an answer makes a provider Active (or
Degraded when its moving-average latency is above ``SLOW_MS``), no answer makes
it Offline, a refusal (full disk, access denied) makes it Degraded.

Every operation through a ``MonitoredBlobStore`` reports its latency or its
failure here; probes (status, `providers test`) report the same way. The
board is saved in the node home, so the next run starts from what this one
learned: a read then skips a provider known to be Offline at once instead of
waiting for its timeout again. An Offline mark expires after ``retry_after``
seconds, when the provider gets another chance (a circuit breaker's half-open
state).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from metanode_storage.errors import InputError, ObjectNotFound, ProviderError, ProviderUnavailable
from metanode_storage.fileio import atomic_write
from metanode_storage.providers.base import BlobStore

ACTIVE = "Active"
DEGRADED = "Degraded"  # answering, but slow or refusing (full, access denied)
OFFLINE = "Offline"  # did not answer; skipped until retry_after has passed
UNKNOWN = "Unknown"  # no operation measured yet

_EWMA = 0.3  # weight of the newest latency sample
SLOW_MS = 1000.0  # a moving-average latency above this makes an answering provider Degraded
RETRY_OFFLINE_AFTER = 30.0


@dataclass
class ProviderHealth:
    state: str = UNKNOWN
    latency_ms: float | None = None  # moving average of successful operations
    last_error: str = ""
    last_failure_at: float = 0.0
    offline_since: float = 0.0  # when the current Offline spell began; 0 when answering
    updated_at: float = 0.0


class HealthBoard:
    def __init__(self, path: Path | None = None, retry_after: float = RETRY_OFFLINE_AFTER) -> None:
        self._path = path
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._health: dict[str, ProviderHealth] = {}
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            document = json.loads(path.read_text())
            self._health = {name: ProviderHealth(**row) for name, row in document.items()}
        except (OSError, ValueError, TypeError):
            self._health = {}  # a lost or damaged board only costs a re-discovery

    def save(self) -> None:
        if self._path is None:
            return
        with self._lock:
            body = json.dumps({n: asdict(h) for n, h in self._health.items()}, indent=1)
        with contextlib.suppress(OSError, InputError):  # losing it costs a re-discovery
            atomic_write(self._path, body.encode(), durable=False)

    def get(self, name: str) -> ProviderHealth:
        with self._lock:
            return ProviderHealth(**asdict(self._health.get(name, ProviderHealth())))

    def record_success(self, name: str, seconds: float) -> None:
        now = time.time()
        with self._lock:
            health = self._health.setdefault(name, ProviderHealth())
            sample = seconds * 1000
            health.latency_ms = (
                sample
                if health.latency_ms is None
                else (1 - _EWMA) * health.latency_ms + _EWMA * sample
            )
            health.state = DEGRADED if health.latency_ms > SLOW_MS else ACTIVE
            health.offline_since = 0.0
            health.updated_at = now

    def record_failure(self, name: str, error: ProviderError) -> None:
        now = time.time()
        with self._lock:
            health = self._health.setdefault(name, ProviderHealth())
            offline = isinstance(error, ProviderUnavailable)
            if offline and health.state != OFFLINE:
                health.offline_since = now
            health.state = OFFLINE if offline else DEGRADED
            health.last_error = error.message
            health.last_failure_at = now
            health.updated_at = now

    def forget(self, names: Iterable[str]) -> None:
        """Drop what was learned of these providers (their settings changed: a new
        directory or endpoint is not known Offline because the old one was)."""
        with self._lock:
            for name in names:
                self._health.pop(name, None)

    def is_offline(self, name: str) -> bool:
        """Known Offline, and too recently to be worth trying again yet."""
        with self._lock:
            health = self._health.get(name)
            return (
                health is not None
                and health.state == OFFLINE
                and time.time() - health.updated_at < self._retry_after
            )


class MonitoredBlobStore(BlobStore):
    """Wraps a store and reports every outcome to the health board."""

    def __init__(self, inner: BlobStore, board: HealthBoard) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self._board = board

    @contextlib.contextmanager
    def _measured(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        except ObjectNotFound:
            self._board.record_success(self.name, time.perf_counter() - started)  # it answered
            raise
        except ProviderError as exc:
            self._board.record_failure(self.name, exc)
            raise
        self._board.record_success(self.name, time.perf_counter() - started)

    def put(self, key: str, data: bytes) -> None:
        with self._measured():
            self.inner.put(key, data)

    def get(self, key: str) -> bytes:
        with self._measured():
            return self.inner.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        with self._measured():
            return self.inner.get_range(key, start, end)

    def size(self, key: str) -> int:
        with self._measured():
            return self.inner.size(key)

    def delete(self, key: str) -> None:
        with self._measured():
            self.inner.delete(key)

    def list_keys(self) -> Iterator[str]:
        with self._measured():
            keys = list(self.inner.list_keys())
        return iter(keys)

    def check_reachable(self) -> None:
        with self._measured():
            self.inner.check_reachable()

    def create_bucket(self) -> None:
        with self._measured():
            self.inner.create_bucket()

    def remove_partial_writes(self, is_ours: Callable[[str], bool]) -> None:
        self.inner.remove_partial_writes(is_ours)
