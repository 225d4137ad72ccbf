"""QLOCK: named leases with deadlines and fencing tokens, so concurrent runs never
corrupt state.

A lease is a row in the ``leases`` table of the block map's SQLite file: the lock's
name, shared or exclusive, who holds it (host, pid and the process's start time), what
for, and a deadline. Stores and retrieves hold the ``blocks`` lock shared; removal,
garbage collection, repacking, key rotation and provider changes hold it exclusively,
so a chunk is never deleted while a store that dedups against it is in flight.

- **Deadlines.** A holder renews its lease while it works (every third of the TTL). A
  lease past its deadline is stale and the next run takes it over; so is one held by a
  process on this host that no longer exists (a SIGKILLed run), at once.
- **Fencing tokens.** Every lease gets a new token from one counter that only grows.
  Map transactions check, inside the transaction, that the writer's lease is still
  there (``fence_holds``), so a holder that was paused past its deadline and taken
  over cannot write after all; and every audit event carries the token of the lease
  under which it was written, so an auditor can tell holders apart and order them.
- **Writers first.** An exclusive request that has to wait leaves a waiter row; new
  shared leases wait behind it, and a process holding an idle shared lease lets it go.

A process holds one shared lease however many of its threads store at once, and keeps
it for a moment after the last one finishes (``_LINGER``), so a loop of stores costs
one lease, not one per store. The table is left out of map backups: leases belong to
the machine that holds them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from metanode_storage.blockmap.leases import EXCLUSIVE, SHARED, Lease, LeaseTable
from metanode_storage.database import DatabaseUrl
from metanode_storage.errors import InvalidSetting, MetanodeError, NodeBusy

BLOCKS = "blocks"
TTL_ENV = "METANODE_LOCK_TTL"
DEFAULT_TTL = 60.0
DEFAULT_TIMEOUT = 30.0
_POLL = 0.05
_LINGER = 0.5  # seconds an idle shared lease is kept for the next store of this process


def lock_ttl() -> float:
    """The lease time limit: ``METANODE_LOCK_TTL`` seconds, else 60."""
    raw = os.environ.get(TTL_ENV, "")
    if not raw:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        ttl = 0.0
    if not 0.5 <= ttl <= 86400:
        raise InvalidSetting(f"{TTL_ENV}={raw!r} is not a number of seconds from 0.5 to 86400")
    return ttl


# Told of stale leases taken over, and of the lease that replaced them (None: still waiting).
TakeoverHook = Callable[[list[Lease], Lease | None], None]


class QLock:
    """This process's hold on one named lock: one shared lease for all its threads, or
    an exclusive lease for one operation, renewed by a background thread."""

    def __init__(
        self,
        table: LeaseTable,
        name: str = BLOCKS,
        *,
        ttl: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_takeover: TakeoverHook = lambda stale, by: None,
    ) -> None:
        self.table = table
        self.name = name
        self.ttl = ttl if ttl is not None else lock_ttl()
        self.timeout = timeout
        self.on_takeover = on_takeover
        self._cond = threading.Condition()
        self._shared: Lease | None = None
        self._users = 0  # threads inside shared()
        self._idle_since = 0.0
        self._draining = False  # an exclusive request waits: new shared users wait too
        self._exclusive: Lease | None = None
        self._lost: set[int] = set()
        self._renewer: threading.Thread | None = None
        self._renewing = False  # set and cleared under the condition, unlike is_alive()
        self._stopping = threading.Event()

    # -- holding -----------------------------------------------------------------------

    @contextmanager
    def shared(self, what: str) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while self._draining or self._exclusive is not None:
                self._wait(deadline, what)
            if self._shared is None or self._shared.token in self._lost:
                self._drop_shared()
                self._shared = self._acquire(SHARED, what, deadline)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._idle_since = time.monotonic()
                self._cond.notify_all()

    @contextmanager
    def exclusive(self, what: str) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while self._draining or self._exclusive is not None:
                self._wait(deadline, what)
            self._draining = True
            try:
                while self._users:
                    self._wait(deadline, what)
                self._drop_shared()
                self._exclusive = self._acquire(EXCLUSIVE, what, deadline)
            finally:
                self._draining = False
        try:
            yield
        finally:
            with self._cond:
                self._release_exclusive()
                self._cond.notify_all()

    def _wait(self, deadline: float, what: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise self._busy(what)
        self._cond.wait(min(left, _POLL * 4))

    def _acquire(self, mode: str, what: str, deadline: float) -> Lease:
        """Take a lease from the table, polling until ``deadline``. Called with the
        condition held; it is let go while sleeping so other threads can finish."""
        waiter: int | None = None
        try:
            while True:
                lease, stale, waiter = self.table.try_acquire(
                    self.name, mode, what, self.ttl, waiter
                )
                if stale:
                    self.on_takeover(stale, lease)
                if lease is not None:
                    self._start_renewer()
                    return lease
                if time.monotonic() >= deadline:
                    raise self._busy(what)
                self._cond.wait(_POLL)
        except BaseException:
            if waiter is not None:
                self.table.release(waiter)
            raise

    def _busy(self, what: str) -> NodeBusy:
        holders = [lease for lease in self.table.leases() if lease.name == self.name]
        held = "; ".join(f"{h.mode} by {h.holder} to {h.purpose}" for h in holders) or "none"
        return NodeBusy(
            f"the '{self.name}' lock is held ({held}); gave up after {self.timeout:g} s "
            f"waiting to {what}",
            "retry when the other run has finished; `metanode storage lock status` shows it",
        )

    def _drop_shared(self) -> None:
        lease, self._shared = self._shared, None
        self._release(lease)

    def _release_exclusive(self) -> None:
        lease, self._exclusive = self._exclusive, None
        self._release(lease)

    def _release(self, lease: Lease | None) -> None:
        if lease is not None:
            self.table.release(lease.token)
            self._lost.discard(lease.token)

    # -- fencing -----------------------------------------------------------------------

    @property
    def token(self) -> int | None:
        """The fencing token this process writes under now, if it holds the lock."""
        lease = self._exclusive or self._shared
        return lease.token if lease is not None else None

    # -- renewal -----------------------------------------------------------------------

    def _start_renewer(self) -> None:
        if not self._renewing:
            self._renewing = True
            self._renewer = threading.Thread(
                target=self._renew_loop, name="metanode-qlock", daemon=True
            )
            self._renewer.start()

    def _renew_loop(self) -> None:
        """Renew held leases, let an idle shared lease go after ``_LINGER`` (or at once
        when another process waits for the lock). It sleeps on an event of its own, so
        the stores that come and go do not wake it."""
        tick = min(self.ttl / 3, _LINGER / 2)
        renewed = time.monotonic()
        try:
            while not self._stopping.wait(tick):
                with self._cond:
                    if not (self._shared or self._exclusive):
                        self._renewing = False  # decided under the condition: no race
                        return
                    try:
                        if self._shared is not None:
                            others_wait = self.table.waiting(self.name)
                            idle = time.monotonic() - self._idle_since
                            if self._users == 0 and (others_wait or idle >= _LINGER):
                                self._drop_shared()
                                self._cond.notify_all()
                                continue
                            if others_wait:
                                self._draining_for_others()
                        if time.monotonic() - renewed >= self.ttl / 3:
                            renewed = time.monotonic()
                            for lease in (self._shared, self._exclusive):
                                if lease is not None and not self.table.renew(
                                    lease.token, self.ttl
                                ):
                                    self._lost.add(lease.token)
                    except MetanodeError:
                        # the lease table did not answer (a shared map's server is down, a
                        # busy file): try again next tick; a lease that runs out meanwhile
                        # fails the holder's next fenced write, as it must
                        continue
        finally:
            with self._cond:
                self._renewing = False

    def _draining_for_others(self) -> None:
        """Another process waits for the lock exclusively: let this process's running
        stores finish, then give the shared lease up so it can go first."""
        self._draining = True
        try:
            while self._users and not self._stopping.is_set():
                self._cond.wait(_POLL)
            self._drop_shared()
        finally:
            self._draining = False
            self._cond.notify_all()

    def close(self) -> None:
        self._stopping.set()
        with self._cond:
            self._drop_shared()
            self._release_exclusive()
            self._cond.notify_all()
        if self._renewer is not None:
            self._renewer.join(timeout=5)


@contextmanager
def holding_blocks_lock(blockmap: Path | DatabaseUrl, purpose: str) -> Iterator[None]:
    """The node's ``blocks`` lock, exclusive, without opening the node: for changing its
    settings, which every run reads at start."""
    leases = LeaseTable(blockmap)
    lock = QLock(leases, BLOCKS)
    try:
        with lock.exclusive(purpose):
            yield
    finally:
        lock.close()
        leases.close()
