"""Subscriptions: catch up from a position, then follow live appends (anyio).

Reading is keyset-paged from the log, so there is no gap and no duplicate:
the next page always starts after the last position delivered, and
positions become visible in commit order (see ``_postgres.py``). Back-pressure
is the async iterator itself: the next page is read only when the consumer
has taken the previous one, so a slow consumer holds one page, never a backlog.

Wake-ups come from one :class:`ChangeWatcher` per store and process, shared
by every follower: one thread blocks on the dialect's waiter (a LISTEN
connection on PostgreSQL, one ``data_version`` poller on SQLite) and wakes
the followers' event loops when the log may have grown. A follower that
waits holds no thread and no pooled connection, only an ``anyio.Event``; it
uses a connection for the moment it reads a page. A periodic re-read covers
a missed wake-up.

Why one watcher thread, and why only it touches the waiter's connection
(issue #18): each follower used to own a waiter whose ``wait`` ran in a
worker thread, abandoned on cancel. A closed client then closed the
connection under a thread still polling it (SQLite: SIGSEGV), and every
waiting client held a pooled connection and a worker thread, so a dozen
tails starved every other endpoint. The watcher's thread alone opens, polls
and closes its connection; it stops when the last follower leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.to_thread

from labledger.store.base import EventStore, RecordedEvent

IDLE_RECHECK_S = 1.0
WATCH_SLICE_S = 0.25
"""How long the watcher blocks in one wait: the most it takes to notice it should stop."""
RETRY_S = 1.0
"""Pause before the watcher reopens its waiter after the store failed (e.g. a PG restart)."""


class ChangeWatcher:
    """One thread per store telling every follower's event loop that the log may have grown.

    Use :func:`watcher_for`; followers enter :meth:`following` and await
    :meth:`Follower.wait`. The thread starts with the first follower and
    stops (closing its connection) when the last one leaves.
    """

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._generation = 0
        self._wakers: set[Callable[[], None]] = set()
        self._users = 0
        self._stop: threading.Event | None = None
        self._threads: list[threading.Thread] = []

    @property
    def generation(self) -> int:
        """How many changes were seen so far (moves on every wake-up)."""
        return self._generation

    @contextmanager
    def following(self) -> Iterator[Follower]:
        """A follower for the duration of the block (starts the thread if it is the first)."""
        with self._lock:
            self._users += 1
            if self._stop is None:
                self._start()
        try:
            yield Follower(self)
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._stop is not None:
                    self._stop.set()
                    self._stop = None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread now, whoever still follows, and wait for it to end."""
        with self._lock:
            if self._stop is not None:
                self._stop.set()
                self._stop = None
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    def _start(self) -> None:
        stop = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(stop,), name="labledger-change-watcher", daemon=True
        )
        self._stop = stop
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _watch(self, stop: threading.Event) -> None:
        waiter = None
        try:
            while not stop.is_set():
                try:
                    if waiter is None:
                        waiter = self._store.waiter()
                        # a commit just before the waiter opened would go unseen
                        self._wake_all()
                    changed = waiter.wait(WATCH_SLICE_S)
                except Exception:
                    # The store is unreachable or closing. Followers re-read every
                    # IDLE_RECHECK_S anyway; reopen the waiter after a pause.
                    if waiter is not None:
                        with contextlib.suppress(Exception):
                            waiter.close()
                        waiter = None
                    stop.wait(RETRY_S)
                    continue
                if changed:
                    self._wake_all()
        finally:
            if waiter is not None:
                with contextlib.suppress(Exception):
                    waiter.close()

    def _wake_all(self) -> None:
        with self._lock:
            self._generation += 1
            wakers = list(self._wakers)
        for wake in wakers:
            with contextlib.suppress(RuntimeError):  # that follower's loop has ended
                wake()

    def _register(self, wake: Callable[[], None], seen: int) -> bool:
        """Add a waker unless a change came since ``seen`` (then False: no need to wait)."""
        with self._lock:
            if self._generation != seen:
                return False
            self._wakers.add(wake)
            return True

    def _unregister(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakers.discard(wake)


class Follower:
    """One follower's view of a :class:`ChangeWatcher`: waits without a thread or connection."""

    def __init__(self, watcher: ChangeWatcher) -> None:
        self._watcher = watcher
        self._seen = watcher.generation

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a change; True if one came since the last wait."""
        event = anyio.Event()
        wake = _threadsafe_setter(event)
        if self._watcher._register(wake, self._seen):
            try:
                with anyio.move_on_after(timeout):
                    await event.wait()
            finally:
                self._watcher._unregister(wake)
        now = self._watcher.generation
        changed, self._seen = now != self._seen, now
        return changed


def _threadsafe_setter(event: anyio.Event) -> Callable[[], None]:
    """A callable that sets ``event`` from any thread, without blocking, on its own loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio's other backend, trio (no sniffio in the base)
        import trio

        token = trio.lowlevel.current_trio_token()
        return lambda: token.run_sync_soon(event.set)

    def wake() -> None:
        loop.call_soon_threadsafe(event.set)

    return wake


_watchers: weakref.WeakKeyDictionary[Any, ChangeWatcher] = weakref.WeakKeyDictionary()
_watchers_lock = threading.Lock()


def watcher_for(store: EventStore) -> ChangeWatcher:
    """The process's one :class:`ChangeWatcher` of ``store`` (created on first use)."""
    with _watchers_lock:
        watcher = _watchers.get(store)
        if watcher is None:
            watcher = _watchers[store] = ChangeWatcher(store)
        return watcher


def stop_watching(store: EventStore, timeout: float = 5.0) -> None:
    """Stop ``store``'s watcher thread, if any (before closing the store)."""
    with _watchers_lock:
        watcher = _watchers.pop(store, None)
    if watcher is not None:
        watcher.close(timeout)


async def subscribe(
    store: EventStore,
    from_position: int = 1,
    *,
    types: Collection[str] | None = None,
    stream_prefix: str = "",
    page_size: int = 500,
    limiter: anyio.CapacityLimiter | None = None,
) -> AsyncIterator[RecordedEvent]:
    """Every event with position >= ``from_position`` matching the filters, forever.

    Args:
        store: an open store (SQLite or PostgreSQL).
        from_position: the first position wanted (checkpoint + 1 to resume).
        types: only these event types (None: all).
        stream_prefix: only streams starting with this literal prefix.
        page_size: events read per page (the most held in memory).
        limiter: the worker threads page reads may use (default: anyio's shared pool).

    Raises:
        CorruptionDetected: a row in the log cannot be decoded (names its position).
    """
    wanted = frozenset(types) if types is not None else None
    position = max(1, from_position)
    with watcher_for(store).following() as follower:
        while True:
            page = await anyio.to_thread.run_sync(
                _page, store, position, page_size, limiter=limiter
            )
            for event in page:
                position = event.position + 1
                if wanted is not None and event.type not in wanted:
                    continue
                if not event.stream.startswith(stream_prefix):
                    continue
                yield event
            if len(page) < page_size:
                await follower.wait(IDLE_RECHECK_S)


def _page(store: EventStore, position: int, size: int) -> list[RecordedEvent]:
    return list(store.read_all(position, batch_size=size, limit=size))
