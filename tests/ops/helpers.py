"""Helpers for the backup and archive tests (issue #8)."""

from __future__ import annotations

import uuid

from labledger.store import EventStore, NewEvent, init_store, open_store
from labledger.testing.backends import Backend


def new_store(backend: Backend) -> EventStore:
    """A fresh, initialised store on ``backend``."""
    url = backend.fresh_url()
    init_store(url)
    return open_store(url)


def fill(store: EventStore, n: int, *, runs: int = 2, streams: int = 3) -> None:
    """Append ``n`` events, a few at a time, across streams and runs."""
    done = 0
    while done < n:
        k = min(5, n - done)
        i = done
        store.append(
            f"s{i % streams}",
            [
                NewEvent.from_json(
                    "lab.Note",
                    {"i": i + j, "text": "é" * (i % 4)},
                    metadata={"m": i + j},
                    run_id=f"run-{(i // 5) % runs}",
                    correlation_id=str(uuid.uuid4()),
                    actor="tester",
                )
                for j in range(k)
            ],
        )
        done += k


def envelope(e: object) -> tuple[object, ...]:
    """What an import must keep of an event (not its new position or version)."""
    names = (
        "id",
        "stream",
        "type",
        "schema_version",
        "recorded_at_us",
        "correlation_id",
        "causation_id",
        "run_id",
        "actor",
        "data",
        "metadata",
    )
    return tuple(getattr(e, n) for n in names)
