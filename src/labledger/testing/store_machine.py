"""A hypothesis state machine: the store and an in-memory model, driven by the same rules.

Invariants after every step: read_all equals the model, positions strictly
increase from 1 without gaps, stream versions are contiguous, a conflict
wrote nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from labledger import (
    ANY,
    EXISTS,
    NO_STREAM,
    EventStore,
    IdempotencyConflict,
    NewEvent,
    WrongExpectedVersion,
)
from labledger.store import ExpectedVersion, StreamState

STREAMS = st.sampled_from(["alpha", "beta", "a_b", "axb", "run-1"])
PAYLOADS = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.booleans(), st.none()),
    max_size=4,
)


@dataclass
class Model:
    """The log as a list; what the store should contain."""

    log: list[tuple[str, NewEvent]] = field(default_factory=list)

    def version(self, stream: str) -> int:
        return sum(1 for s, _ in self.log if s == stream) - 1

    def accepts(self, stream: str, expected: ExpectedVersion) -> bool:
        current = self.version(stream)
        if expected is StreamState.ANY:
            return True
        if expected is StreamState.NO_STREAM:
            return current < 0
        if expected is StreamState.EXISTS:
            return current >= 0
        return expected == current


class StoreMachine(RuleBasedStateMachine):
    """Subclass and set ``open_store`` to a callable returning a fresh, initialised store."""

    def __init__(self) -> None:
        super().__init__()
        self.store: EventStore = self.make_store()
        self.model = Model()
        self.written: list[tuple[str, list[NewEvent]]] = []

    def make_store(self) -> EventStore:
        raise NotImplementedError

    def teardown(self) -> None:
        self.store.close()

    @rule(
        stream=STREAMS,
        payloads=st.lists(PAYLOADS, min_size=1, max_size=4),
        expected=st.one_of(st.sampled_from([ANY, NO_STREAM, EXISTS]), st.integers(0, 6)),
    )
    def append(
        self, stream: str, payloads: list[dict[str, object]], expected: ExpectedVersion
    ) -> None:
        events = [NewEvent.from_json("test.Step", p, id=uuid.uuid4()) for p in payloads]
        head = self.store.head()
        if self.model.accepts(stream, expected):
            result = self.store.append(stream, events, expected)
            assert result.first_position == head + 1 and not result.already_appended
            self.model.log.extend((stream, e) for e in events)
            self.written.append((stream, events))
        else:
            try:
                self.store.append(stream, events, expected)
            except WrongExpectedVersion as exc:
                assert exc.actual == self.model.version(stream)
            else:
                raise AssertionError("conflict not detected")
            assert self.store.head() == head

    @precondition(lambda self: self.written)
    @rule(data=st.data())
    def repeat_a_batch(self, data: st.DataObject) -> None:
        stream, events = data.draw(st.sampled_from(self.written))
        head = self.store.head()
        result = self.store.append(stream, events, ANY)
        assert result.already_appended and self.store.head() == head

    @precondition(lambda self: self.written)
    @rule(data=st.data(), other=STREAMS)
    def reuse_an_id_elsewhere(self, data: st.DataObject, other: str) -> None:
        _, events = data.draw(st.sampled_from(self.written))
        victim = events[0]
        clash = NewEvent(type=victim.type, data=b'{"changed":true}', id=victim.id)
        try:
            self.store.append(other, [clash])
        except IdempotencyConflict:
            pass
        else:
            raise AssertionError("an id was reused with other content")

    @rule(stream=STREAMS, start=st.integers(0, 5), limit=st.none() | st.integers(0, 5))
    def read_stream(self, stream: str, start: int, limit: int | None) -> None:
        want = [e.id for s, e in self.model.log if s == stream][start:]
        if limit is not None:
            want = want[:limit]
        assert [e.id for e in self.store.read_stream(stream, start, limit)] == want

    @invariant()
    def log_matches_model(self) -> None:
        stored = list(self.store.read_all(batch_size=7))
        assert [e.position for e in stored] == list(range(1, len(self.model.log) + 1))
        assert [(e.stream, e.id, e.data) for e in stored] == [
            (s, e.id, e.data) for s, e in self.model.log
        ]
        seen: dict[str, int] = {}
        for e in stored:
            assert e.stream_version == seen.get(e.stream, -1) + 1
            seen[e.stream] = e.stream_version
        assert self.store.head() == len(self.model.log)
