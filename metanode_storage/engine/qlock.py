"""QLOCK: time-limited node locks, so that concurrent runs never corrupt state.

Stores and retrieves hold the lock shared; removal and garbage collection
hold it exclusively, so a chunk cannot be deleted while a store that dedups
against it is in flight. The lock is an ``flock`` on a file in the node home:
the kernel drops it when its holder dies, even by SIGKILL, so a crash never
leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from metanode_storage.errors import NodeBusy

DEFAULT_TIMEOUT = 30.0
_POLL = 0.05


class NodeLock:
    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    @contextmanager
    def _hold(self, mode: int, what: str) -> Iterator[None]:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + self.timeout
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise NodeBusy(
                            f"another run holds the node lock; gave up after {self.timeout:g} s "
                            f"waiting to {what}",
                            "retry when the other run has finished",
                        ) from None
                    time.sleep(_POLL)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def shared(self, what: str) -> AbstractContextManager[None]:
        return self._hold(fcntl.LOCK_SH, what)

    def exclusive(self, what: str) -> AbstractContextManager[None]:
        return self._hold(fcntl.LOCK_EX, what)
