"""Group commit: concurrent appenders share one durable transaction per flush.

Leader/follower, no background thread: a caller that finds no commit in
progress becomes the leader and commits everything queued (its own request
first); callers arriving meanwhile queue up and wait, and the next leader
takes them all in one transaction. A lone writer therefore commits at once,
with no hand-off, and 32 writers pay for a handful of fsyncs instead of 32.

Every caller still gets its own outcome: positions, its expected-version
result, its error. Requests are planned independently (``planner.plan``),
and if the shared transaction fails as a whole, each request is retried on
its own so that one request's failure never fails the others. No caller
returns before the transaction holding its events has committed durably.

Why a leader lingers: measured with 32 writers, flushes alternated 1, 31,
1, 31 — the first writer back from a flush found an empty queue and
committed alone while the other 31 were still preparing their next request.
So a leader waits (at most the last flush's duration, capped at
``MAX_LINGER_S``) until as many requests are queued as the last flush held.
A lone writer's last flush held one request: it never waits. Arrivals wake
the lingering leader only once that target is reached: waking it for each
of 32 arrivals cost a thread switch apiece under the GIL.

A leader flushes once, then hands leadership to the oldest queued request's
thread and returns to its caller: its own events are committed, and a
leader that kept flushing until the queue ran dry would hold its caller
(and that writer's next request) for as long as the others kept writing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from labledger.errors import LabledgerError, StoreUnavailable
from labledger.store.planner import Outcome, Request

MAX_EVENTS_PER_FLUSH = 10_000
MAX_LINGER_S = 0.002
"""How long a leader may wait for the last flush's writers to queue again."""


@dataclass
class _Pending:
    request: Request
    size: int
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None
    error: BaseException | None = None
    lead: bool = False
    """Set (with ``done``) when this request's thread is to lead the next flush."""


class GroupCommitter:
    def __init__(self, commit: Callable[[Sequence[Request]], list[Outcome]]) -> None:
        self.commit = commit
        """Commits a flush's requests (tests may wrap it to hold a leader)."""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Pending] = []
        self._leading = False
        self._last_size = 1
        self._last_flush_s = 0.0
        self.flush_sizes: Counter[int] = Counter()
        """Requests per flush, since this store was opened (for benchmarks and ops)."""

    def queued(self) -> int:
        """How many requests wait for the next flush."""
        with self._lock:
            return len(self._queue)

    def submit(self, request: Request) -> Outcome:
        """Commit ``request`` (with whatever else is queued); its own outcome."""
        pending = _Pending(request, sum(len(p.events) for p in request))
        with self._lock:
            self._queue.append(pending)
            lead = not self._leading
            if lead:
                self._leading = True
            elif len(self._queue) >= self._last_size:
                self._arrived.notify()  # the lingering leader's target is reached
        while True:
            if lead:
                self._lead()
            pending.done.wait()
            if not pending.lead:
                break
            pending.lead, lead = False, True  # handed leadership: not committed yet
            pending.done.clear()
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _lead(self) -> None:
        """Flush once (this thread's request is first in the queue), then hand over."""
        with self._lock:
            self._gather()
            batch = self._take()
        self.flush_sizes[len(batch)] += 1
        started = time.perf_counter()
        try:
            self._flush(batch)
        except BaseException as exc:  # never leave followers waiting on a dead leader
            for p in batch:
                if not p.done.is_set():
                    p.error = exc
                    p.done.set()
        with self._lock:
            self._last_size, self._last_flush_s = len(batch), time.perf_counter() - started
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
            else:
                self._leading = False

    def _gather(self) -> None:
        """Wait (briefly, lock held) for the writers of the last flush to queue again."""
        if not self._queue or len(self._queue) >= self._last_size:
            return
        deadline = time.perf_counter() + min(MAX_LINGER_S, self._last_flush_s)
        while len(self._queue) < self._last_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._arrived.wait(remaining)

    def _take(self) -> list[_Pending]:
        taken, events = 0, 0
        for item in self._queue:
            if taken and events + item.size > MAX_EVENTS_PER_FLUSH:
                break
            taken += 1
            events += item.size
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _flush(self, batch: list[_Pending]) -> None:
        try:
            outcomes = self.commit([p.request for p in batch])
        except BaseException as exc:
            if (
                len(batch) == 1
                or isinstance(exc, StoreUnavailable)
                or not isinstance(exc, LabledgerError | Exception)
            ):
                for p in batch:
                    p.error = exc
                    p.done.set()
                return
            for p in batch:  # the shared transaction failed: give each its own chance
                self._flush([p])
            return
        if len(outcomes) != len(batch):
            raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} requests")
        for p, outcome in zip(batch, outcomes, strict=True):
            p.outcome = outcome
            p.done.set()
