"""Authentication failures, audited without letting a flood grow the trail.

Every refused request used to append its own signed event: 3,000 bad
requests grew the trail by 1.7 MB in 2.3 s. Now failures are counted per
source address and flushed as one ``auth_failure`` event per source per
interval (with the count, the first and last time, and the paths tried, up
to a few), by the service's timer and when it stops. At most ``MAX_SOURCES``
sources are told apart in one interval; beyond that they are counted together
under "other", so the growth per interval is bounded whatever the flood.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCES = 64
MAX_PATHS = 5
FLUSH_INTERVAL = 60.0


@dataclass
class _Tally:
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    paths: list[str] = field(default_factory=list)


class AuthFailures:
    def __init__(self, record: Callable[[dict[str, Any]], None]) -> None:
        self._record = record  # appends one audit event with the given detail
        self._lock = threading.Lock()
        self._tallies: dict[str, _Tally] = {}

    def count(self, source: str, method: str, path: str) -> None:
        now = time.time()
        with self._lock:
            if source not in self._tallies and len(self._tallies) >= MAX_SOURCES:
                source = "other"
            tally = self._tallies.setdefault(source, _Tally(first=now))
            tally.count += 1
            tally.last = now
            tried = f"{method} {path}"
            if tried not in tally.paths and len(tally.paths) < MAX_PATHS:
                tally.paths.append(tried)

    def flush(self) -> int:
        """Record one event per source counted since the last flush; return how many."""
        with self._lock:
            tallies, self._tallies = self._tallies, {}
        for source, tally in sorted(tallies.items()):
            self._record(
                {
                    "peer": source,
                    "count": tally.count,
                    "first": int(tally.first),
                    "last": int(tally.last),
                    "tried": tally.paths,
                }
            )
        return len(tallies)
