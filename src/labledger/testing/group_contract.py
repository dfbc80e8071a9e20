"""Group commit: each concurrent appender gets exactly its own outcome (issue #5).

Correctness, not timing: the leader is held inside its commit so that the
other appenders provably queue into one shared transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import anyio
import pytest

from labledger import (
    NO_STREAM,
    EventStore,
    IdempotencyConflict,
    InvalidEvent,
    NewEvent,
    WrongExpectedVersion,
)
from labledger.store import SqlEventStore
from labledger.store.aio import AsyncEventStore
from labledger.store.planner import Outcome, Request
from labledger.testing.store_contract import BackendFixtures, ev


class _HeldLeader:
    """Wraps commit_requests: the first flush waits until the others have queued."""

    def __init__(self, store: SqlEventStore, total: int) -> None:
        self.real = store.commit_requests
        self.release = threading.Event()
        self.leading = threading.Event()
        """Set once the first flush is held (its leader's request is calls[0])."""
        self.first_size = 0
        self.batches: list[int] = []
        self.total = total
        store.group.commit = self
        self.store = store

    def __call__(self, requests: Sequence[Request]) -> list[Outcome]:
        if not self.first_size:
            self.first_size = len(requests)
            self.leading.set()
            assert self.release.wait(30), "the other appenders never queued"
        self.batches.append(len(requests))
        return self.real(requests)

    def wait_for_queue(self) -> None:
        """Release the held leader once every appender is inside the committer."""
        for _ in range(3000):
            if self.first_size and self.first_size + self.store.group.queued() >= self.total:
                break
            threading.Event().wait(0.01)
        self.release.set()


def _run_all(calls: list[Callable[[], Any]], held: _HeldLeader | None = None) -> list[Any]:
    """Run every call in its own thread; with ``held``, calls[0] is the held leader
    (the others start only once it holds the first flush, so none can lead before it)."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for i, t in enumerate(threads):
        t.start()
        if i == 0 and held is not None:
            assert held.leading.wait(30), "the first call never led a flush"
    for t in threads:
        t.join()
    return results


class GroupCommitContract(BackendFixtures):
    """The SQL store's group committer; its tests hold a flush's leader (``store.group``)."""

    @pytest.fixture
    def store(self, url: str) -> Iterator[SqlEventStore]:
        store = SqlEventStore(url)
        try:
            yield store
        finally:
            store.close()

    def test_concurrent_appenders_get_their_own_outcomes(self, store: SqlEventStore) -> None:
        store.append("taken", [ev(0)])
        existing = ev(1)
        store.append("dup", [existing])
        held = _HeldLeader(store, total=8)
        same_id_other_content = NewEvent(type="test.Happened", data=b'{"x":1}', id=existing.id)
        calls: list[Callable[[], Any]] = [
            lambda: store.append("lead", [ev(10)]),
            lambda: store.append("a", [ev(11), ev(12)], NO_STREAM),
            lambda: store.append("taken", [ev(13)], NO_STREAM),  # conflict
            lambda: store.append("b", [ev(14)]),
            lambda: store.append("dup", [same_id_other_content]),  # idempotency conflict
            lambda: store.append("dup", [existing]),  # idempotent retry
            lambda: store.append("c", [ev(15)], 5),  # conflict
            lambda: store.append("a2", [ev(16)], NO_STREAM),
        ]
        waiter = threading.Thread(target=held.wait_for_queue)
        waiter.start()
        results = _run_all(calls, held)
        waiter.join()
        assert len(held.batches) < len(calls), f"no commit was shared: {held.batches}"
        assert isinstance(results[2], WrongExpectedVersion) and results[2].actual == 0
        assert isinstance(results[4], IdempotencyConflict)
        assert results[5].already_appended and results[5].first_position == 2
        assert isinstance(results[6], WrongExpectedVersion) and results[6].actual == -1
        written = [r for r in results if not isinstance(r, Exception) and not r.already_appended]
        positions = sorted(p for r in written for p in range(r.first_position, r.last_position + 1))
        assert positions == list(range(3, 3 + len(positions)))
        assert [e.position for e in store.read_all()] == list(range(1, store.head() + 1))
        assert store.stream_version("taken") == 0 and store.stream_version("c") == -1
        assert store.verify().ok

    def test_identical_appends_in_one_flush_are_one_append(self, store: SqlEventStore) -> None:
        """Issue #12: a retry sharing its original's flush got IdempotencyConflict."""
        batch = [ev(1), ev(2)]
        held = _HeldLeader(store, total=4)
        calls: list[Callable[[], Any]] = [lambda: store.append("lead", [ev(0)])]
        calls += [lambda: store.append("r", batch, NO_STREAM) for _ in range(3)]
        waiter = threading.Thread(target=held.wait_for_queue)
        waiter.start()
        results = _run_all(calls, held)
        waiter.join()
        assert held.batches[1:] == [3], f"the three appends did not share a flush: {held.batches}"
        assert not any(isinstance(r, Exception) for r in results), results
        fresh = [r for r in results[1:] if not r.already_appended]
        assert len(fresh) == 1
        for r in results[1:]:
            assert (r.first_position, r.last_position) == (2, 3)
            assert (r.first_version, r.last_version) == (0, 1)
        assert store.head() == 3 and [e.id for e in store.read_stream("r")] == [e.id for e in batch]
        assert store.verify().ok

    def test_same_id_other_content_in_one_flush_is_a_conflict(self, store: SqlEventStore) -> None:
        original = ev(1)
        other = NewEvent(type="test.Happened", data=b'{"x":2}', id=original.id)
        held = _HeldLeader(store, total=3)
        calls: list[Callable[[], Any]] = [
            lambda: store.append("lead", [ev(0)]),
            lambda: store.append("r", [original]),
            lambda: store.append("r", [other]),
        ]
        waiter = threading.Thread(target=held.wait_for_queue)
        waiter.start()
        results = _run_all(calls, held)
        waiter.join()
        assert held.batches[1:] == [2], held.batches
        assert not isinstance(results[1], Exception)
        assert isinstance(results[2], IdempotencyConflict) and "a different data" in str(results[2])
        assert store.head() == 2 and store.verify().ok

    def test_a_failing_transaction_does_not_fail_the_others(self, store: SqlEventStore) -> None:
        real = store.commit_requests
        poison = ev(99)

        def flaky(requests: Sequence[Request]) -> list[Outcome]:
            if any(e.id == poison.id for r in requests for p in r for e in p.events):
                raise InvalidEvent("simulated failure of the shared transaction")
            return real(requests)

        held = _HeldLeader(store, total=5)
        held.real = flaky
        calls: list[Callable[[], Any]] = [
            lambda: store.append("lead", [ev(1)]),
            lambda: store.append("x", [ev(2)]),
            lambda: store.append("poisoned", [poison]),
            lambda: store.append("y", [ev(3)]),
            lambda: store.append("z", [ev(4)]),
        ]
        waiter = threading.Thread(target=held.wait_for_queue)
        waiter.start()
        results = _run_all(calls, held)
        waiter.join()
        assert isinstance(results[2], InvalidEvent)
        assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 2)
        assert store.head() == 4 and store.stream_version("poisoned") == -1
        assert store.verify().ok

    def test_a_leader_hands_over_after_its_own_flush(self, store: SqlEventStore) -> None:
        """The next flush is led by a queued writer's thread: a leader's caller is not
        kept flushing for the others for as long as they keep writing."""
        held = _HeldLeader(store, total=3)
        real, leaders = held.real, []

        def recording(requests: Sequence[Request]) -> list[Outcome]:
            leaders.append(threading.get_ident())
            return real(requests)

        held.real = recording
        calls: list[Callable[[], Any]] = [
            lambda: store.append("lead", [ev(0)]),
            lambda: store.append("a", [ev(1)]),
            lambda: store.append("b", [ev(2)]),
        ]
        waiter = threading.Thread(target=held.wait_for_queue)
        waiter.start()
        results = _run_all(calls, held)
        waiter.join()
        assert not any(isinstance(r, Exception) for r in results), results
        assert held.batches == [1, 2]
        assert leaders[0] != leaders[1]
        assert store.head() == 3 and store.verify().ok

    def test_async_appends_share_commits(self, store: SqlEventStore) -> None:
        aio = AsyncEventStore(store)

        async def main() -> list[int]:
            positions: list[int] = []

            async def one(i: int) -> None:
                result = await aio.append(f"s{i % 4}", [ev(i)])
                positions.append(result.first_position)

            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(one, i)
            return positions

        positions = anyio.run(main)
        assert sorted(positions) == list(range(1, 41))
        assert store.verify().ok

    @pytest.mark.parametrize("writers", [8])
    def test_many_threads_many_appends_stay_gap_free(self, store: EventStore, writers: int) -> None:
        def work(k: int) -> list[int]:
            out = []
            for i in range(25):
                version = store.stream_version(f"w{k}")
                out.append(
                    store.append(
                        f"w{k}", [ev(i), ev(i + 1000)], version if version >= 0 else NO_STREAM
                    ).first_position
                )
            return out

        results = _run_all([partial(work, k) for k in range(writers)])
        assert all(isinstance(r, list) for r in results), results
        assert store.head() == writers * 50
        for k in range(writers):
            assert [e.stream_version for e in store.read_stream(f"w{k}")] == list(range(50))
        assert store.verify().ok
