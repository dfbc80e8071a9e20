"""The contract every projection keeps: a pure function of the log.

Subclass with ``backend_fixture``, ``make_projection`` and ``logs`` (a
hypothesis strategy of ``[(stream, event), ...]`` — typed events in log
order). Checked on generated logs:

- live catch-up in random batch sizes, stopping and resuming at random
  checkpoints, gives the same state hash as a rebuild from zero;
- a build as of position p equals a rebuild of the log truncated at p.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labledger import EventStore, RecordedEvent, init_store
from labledger.events import Event
from labledger.ledger import open_ledger
from labledger.projections import Projection, ProjectionEngine
from labledger.security import KeyRing
from labledger.testing.backends import Backend
from labledger.testing.profile import examples
from labledger.testing.store_contract import BackendFixtures

Log = Sequence[tuple[str, Event]]

SETTINGS = settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fresh_ledger(backend: Backend, keyring: KeyRing | None = None) -> EventStore:
    url = backend.fresh_url()
    init_store(url)
    return open_ledger(url, keyring=keyring or KeyRing(), strict=False)


def append_log(store: EventStore, log: Log, run_id: str | None = None) -> None:
    for stream, event in log:
        store.append(stream, [event.to_new_event(run_id=run_id)])


class ProjectionContract(BackendFixtures):
    def make_projection(self) -> Projection:
        raise NotImplementedError

    def logs(self) -> st.SearchStrategy[Log]:
        raise NotImplementedError

    def prepare(self, store: EventStore, log: Log) -> None:
        """Append ``log``; override to wrap events (e.g. sign commands)."""
        append_log(store, log)

    @SETTINGS
    @given(data=st.data())
    def test_live_catch_up_equals_rebuild(self, backend: Backend, data: st.DataObject) -> None:
        log = data.draw(self.logs(), label="log")
        with fresh_ledger(backend) as store:
            self.prepare(store, log)
            proj = self.make_projection()
            head = store.head()
            stops = sorted(data.draw(st.lists(st.integers(0, head), max_size=3), label="stops"))
            batch = data.draw(st.integers(1, 7), label="batch")
            live = ProjectionEngine(store, [proj], batch_size=batch)
            for stop in [*stops, head]:
                live.catch_up(proj.name, until=stop)
            live_hash = live.state_hash(proj.name)
            live.rebuild(proj.name)
            assert live.state_hash(proj.name) == live_hash

    @SETTINGS
    @given(data=st.data())
    def test_as_of_equals_truncated_log(self, backend: Backend, data: st.DataObject) -> None:
        log = data.draw(self.logs(), label="log")
        with fresh_ledger(backend) as full:
            self.prepare(full, log)
            cut = data.draw(st.integers(0, full.head()), label="as_of")
            proj = self.make_projection()
            target_url = backend.fresh_url()
            init_store(target_url)
            with open_ledger(target_url, strict=False) as target:
                as_of = ProjectionEngine(full, [proj], target=target)
                as_of.catch_up(proj.name, until=cut)
                expected = ProjectionEngine(TruncatedLog(full, cut), [proj], target=full)
                expected.rebuild(proj.name)
                assert as_of.state_hash(proj.name) == expected.state_hash(proj.name)


class TruncatedLog:
    """A read-only view of a log that ends at ``head`` (the same records, bytes and times)."""

    def __init__(self, store: EventStore, head: int) -> None:
        self.store, self._head = store, head

    def head(self) -> int:
        return min(self._head, self.store.head())

    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        for event in self.store.read_all(from_position, batch_size=batch_size, limit=limit):
            if event.position > self._head:
                return
            yield event


def hash_of(store: EventStore, proj: Projection) -> str:
    engine = ProjectionEngine(store, [proj])
    engine.catch_up(proj.name)
    return engine.state_hash(proj.name)


__all__ = ["Log", "ProjectionContract", "append_log", "fresh_ledger", "hash_of", "pytest"]
