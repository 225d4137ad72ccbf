"""Group commit: concurrent stores on one node share a signature and a map transaction.

The service stores each upload on its own thread. Each store writes its chunks alone (all
replicas durable), then hands its blocks to ``GroupCommit.commit``. The first caller that
finds no commit running becomes the leader: it takes every request queued so far and
commits them together (one batch signature, one map transaction, one audit transaction);
the others wait and get their own part of the result. A failure fails the whole group, as
one transaction would: each caller then discards what it wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass
class _Waiting(Generic[Request, Result]):
    request: Request
    done: bool = False
    result: Result | None = None
    error: BaseException | None = None


@dataclass
class GroupCommit(Generic[Request, Result]):
    """``commit_all`` takes the queued requests and returns one result per request, in order."""

    commit_all: Callable[[Sequence[Request]], Sequence[Result]]
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queue: list[_Waiting[Request, Result]] = field(default_factory=list)
    _busy: bool = False

    def commit(self, request: Request) -> Result:
        mine: _Waiting[Request, Result] = _Waiting(request)
        with self._cond:
            self._queue.append(mine)
            while not mine.done and self._busy:
                self._cond.wait()
            if mine.done:
                return self._outcome(mine)
            self._busy = True
            group, self._queue = self._queue, []
        try:
            results = self.commit_all([w.request for w in group])
            for waiting, result in zip(group, results, strict=True):
                waiting.result = result
        except BaseException as exc:
            for waiting in group:
                waiting.error = exc
        finally:
            with self._cond:
                for waiting in group:
                    waiting.done = True
                self._busy = False
                self._cond.notify_all()
        return self._outcome(mine)

    @staticmethod
    def _outcome(waiting: _Waiting[Request, Result]) -> Result:
        if waiting.error is not None:
            raise waiting.error
        assert waiting.result is not None
        return waiting.result
