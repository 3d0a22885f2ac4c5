"""Write-behind: usage records (and online samples) leave the request path.

A request's one synchronous write is its reservation on the feature's gate (``aif_gateway.quota``),
made before the model call because it is what keeps budgets and limits exact. Its usage record is
written after the response: the request hands the finished record to a ``UsageWriter`` and answers at
once; the writer's thread persists it (``Gateway.persist``: ledger ``PutItem``, else the spill queue,
else the full record logged at CRITICAL), in the order records were handed over.

"Synchronous" here means: a call the response waits for. The record's write is not one; the audit
line (the full record, in the function's log) is written before the response, so the record exists
outside the process from the moment the request ends, whatever happens to the process afterwards.

Bounded: at most ``max_pending`` records wait; beyond that a request writes its own record inline
(backpressure instead of unbounded memory when the ledger is slow). ``drain`` waits for the backlog —
the deployed server calls it on SIGTERM (``lambda_server``), the buffered Lambda handler before it
returns — and logs whatever it could not write in time in full, so no record is lost with the process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from .records import UsageRecord

log = logging.getLogger("aif_gateway")

THREAD_NAME = "aif-usage-writer"
DEFAULT_MAX_PENDING = 256
T = TypeVar("T")


class WriteBehind(Generic[T]):
    """Persists items on one background thread, after the responses that produced them, in the order
    they were handed over. ``unwritten`` is called for an item that could not be persisted (left at
    ``drain``, or ``persist`` raised). ``max_pending=0``: every item is written by its request."""

    def __init__(
        self,
        persist: Callable[[T], None] | None,
        unwritten: Callable[[T], None],
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        thread_name: str,
    ) -> None:
        self._persist = persist
        self._unwritten = unwritten
        self.max_pending = max_pending
        self.thread_name = thread_name
        self._queue: deque[T] = deque()
        self._busy = 0  # items taken off the queue and not yet persisted
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.written_inline = 0  # items a full backlog made their request write itself

    def bind(self, persist: Callable[[T], None]) -> None:
        """Set what persisting an item means (the gateway binds its usage records' ledger/spill/log
        chain)."""
        self._persist = persist

    def submit(self, item: T) -> None:
        """Hand over a finished item; returns at once unless the backlog is full (then writes it)."""
        persist = self._require()
        with self._cond:
            if len(self._queue) + self._busy < self.max_pending:
                self._queue.append(item)
                self._start()
                self._cond.notify_all()
                return
            self.written_inline += 1
        persist(item)

    def pending(self) -> int:
        """Items handed over and not yet persisted."""
        with self._cond:
            return len(self._queue) + self._busy

    def drain(self, timeout_s: float | None = None) -> int:
        """Wait until every handed-over item is persisted, at most ``timeout_s`` (None: no limit).

        Returns how many were left; those still queued are taken out and given to ``unwritten``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            left = list(self._queue)
            self._queue.clear()
            busy = self._busy
        for item in left:
            self._unwritten(item)
        return len(left) + busy

    def _require(self) -> Callable[[T], None]:
        if self._persist is None:
            raise RuntimeError(f"{type(self).__name__}.bind(persist) was not called")
        return self._persist

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        persist = self._require()
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
                self._busy += 1
            try:
                persist(item)
            except Exception:  # a bug in the chain must not stop the writer
                log.exception("%s: persisting an item raised", self.thread_name)
                self._unwritten(item)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()


def _log_unpersisted(record: UsageRecord) -> None:
    """Last resort for a usage record: in full, at CRITICAL, where an operator can replay it from."""
    log.critical("UNPERSISTED_USAGE_RECORD %s", json.dumps(record.to_dict(), sort_keys=True))


class UsageWriter(WriteBehind[UsageRecord]):
    """Persists usage records after their responses (``Gateway.persist``: ledger, spill queue, log);
    a record it could not write is logged in full at CRITICAL (``UNPERSISTED_USAGE_RECORD``)."""

    def __init__(
        self, persist: Callable[[UsageRecord], None] | None = None, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        super().__init__(persist, _log_unpersisted, max_pending=max_pending, thread_name=THREAD_NAME)
