"""Subscriptions: catch up, then follow live appends; no gap, no duplicate; filters (issue #4)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from labledger import EventStore, NewEvent, RecordedEvent
from labledger.store.subscribe import stop_watching, subscribe
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger


def _note(i: int, kind: str = "mylab.Note") -> NewEvent:
    return NewEvent.from_json(kind, {"i": i})


async def _collect(store: EventStore, n: int, **kwargs: Any) -> list[RecordedEvent]:
    out: list[RecordedEvent] = []
    with anyio.fail_after(60):
        async for event in subscribe(store, **kwargs):
            out.append(event)
            if len(out) == n:
                break
    return out


def test_catch_up_then_follow_without_gap_or_duplicate(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        for i in range(30):
            store.append(f"s{i % 3}", [_note(i)])

        def writer() -> None:
            for i in range(30, 130):
                store.append(
                    f"s{i % 3}", [_note(i), _note(i + 1000)] if i % 10 == 0 else [_note(i)]
                )

        thread = threading.Thread(target=writer)
        thread.start()
        got = anyio.run(lambda: _collect(store, 140, page_size=16))
        thread.join()
        assert [e.position for e in got] == list(range(1, 141))


def test_resume_from_a_checkpoint(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        for i in range(10):
            store.append("s", [_note(i)])
        got = anyio.run(lambda: _collect(store, 4, from_position=7))
        assert [e.position for e in got] == [7, 8, 9, 10]


def test_filters_by_type_and_literal_prefix(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        for i in range(40):
            stream = ["run_a-1", "runxa-1", "other"][i % 3]
            store.append(stream, [_note(i, "mylab.Keep" if i % 2 else "mylab.Drop")])
        got = anyio.run(lambda: _collect(store, 7, types={"mylab.Keep"}, stream_prefix="run_a"))
        expected = [
            e.position
            for e in store.read_all()
            if e.type == "mylab.Keep" and e.stream.startswith("run_a")
        ]
        assert [e.position for e in got] == expected[:7]


class _PageSpy:
    """A store proxy recording how many events each read asked for."""

    def __init__(self, store: EventStore) -> None:
        self.store, self.largest = store, 0

    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        self.largest = max(self.largest, limit or 1 << 62, batch_size)
        return self.store.read_all(from_position, batch_size=batch_size, limit=limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_a_slow_consumer_holds_one_page(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        store.append("s", [_note(i) for i in range(500)])
        spy = _PageSpy(store)

        async def slow() -> int:
            seen = 0
            async for _ in subscribe(spy, page_size=25):  # type: ignore[arg-type]
                seen += 1
                if seen % 100 == 0:
                    await anyio.sleep(0.01)
                if seen == 500:
                    break
            return seen

        try:
            assert anyio.run(slow) == 500
        finally:  # the spy has a change watcher of its own: the store's close does not end it
            stop_watching(spy)  # type: ignore[arg-type]
        assert spy.largest == 25


@pytest.mark.parametrize("appends", [50])
def test_wake_up_follows_appends_promptly(backend: Backend, appends: int) -> None:
    """Followed appends all arrive (their latency is a benchmark figure, not asserted)."""
    with fresh_ledger(backend) as store:

        def writer() -> None:
            for i in range(appends):
                store.append("s", [_note(i)])
                time.sleep(0.002)

        thread = threading.Thread(target=writer)
        thread.start()
        got = anyio.run(lambda: _collect(store, appends))
        thread.join()
        assert len({e.id for e in got}) == appends
