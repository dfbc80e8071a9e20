"""The one run lifecycle the labs share (issue #13), on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any, cast

import msgspec
import pytest

from labledger.errors import IdempotencyConflict, StoreUnavailable, UsageError, WrongExpectedVersion
from labledger.events.runs import Heartbeat, RunFinished, RunResumed, RunStarted, Subsystem
from labledger.events.typed import typed
from labledger.lab import runs
from labledger.lab.runs import RunKind, RunLog, StreamWriter
from labledger.store import ANY, EventStore, ExpectedVersion, NewEvent
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

KIND = RunKind("test", uuid.UUID("00000000-0000-4000-8000-000000000013"), actor="tester")
STARTED = RunStarted(subsystem=Subsystem.DREAM, config={"n": 1}, code_version="v", host="h")


@pytest.fixture
def store(backend: Backend) -> Iterator[EventStore]:
    with fresh_ledger(backend) as s:
        yield s


class LostAcknowledgements:
    """A store whose next ``fail`` appends commit and then report StoreUnavailable."""

    def __init__(self, store: EventStore, fail: int) -> None:
        self.store, self.fail = store, fail

    def append(
        self, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion = ANY
    ) -> Any:
        result = self.store.append(stream, events, expected)
        if self.fail:
            self.fail -= 1
            raise StoreUnavailable("the acknowledgement was lost")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def types(store: EventStore, run_id: str) -> list[str]:
    return [r.type for r in store.read_stream(KIND.stream(run_id))]


def test_names_and_ids_are_deterministic() -> None:
    assert KIND.stream("r1") == "test-r1"
    a = KIND.event_id("r1", "trial", 0, "x")
    assert a == str(uuid.uuid5(KIND.namespace, "r1/trial/0/x"))
    assert a == RunLog(cast(EventStore, None), KIND, "r1").event_id("trial", 0, "x")
    assert a != KIND.event_id("r1", "trial", 1, "x")


def test_an_in_doubt_append_is_retried_and_returns_the_original_positions(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "BACKOFF_S", 0.0)
    log = RunLog(store, KIND, "r1")
    log.start(STARTED)
    flaky = RunLog(cast(EventStore, LostAcknowledgements(store, fail=1)), KIND, "r1")
    flaky.version = log.version
    result = flaky.append([flaky.heartbeat("one")])
    assert result is not None and result.already_appended
    (beat,) = store.read_stream(KIND.stream("r1"), from_version=1)
    assert (result.first_position, result.last_version) == (beat.position, 1)
    assert (flaky.version, flaky.last_position) == (1, beat.position)
    assert types(store, "r1") == [RunStarted.TYPE, Heartbeat.TYPE]


def test_an_append_in_doubt_every_time_raises(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "BACKOFF_S", 0.0)
    flaky = RunLog(cast(EventStore, LostAcknowledgements(store, fail=runs.TRIES)), KIND, "r1")
    with pytest.raises(StoreUnavailable):
        flaky.start(STARTED)
    assert types(store, "r1") == [RunStarted.TYPE]  # once, however often it was sent


def test_resume_continues_the_versions_and_starts_a_new_attempt(store: EventStore) -> None:
    log = RunLog(store, KIND, "r1")
    log.start(STARTED)
    log.append([log.heartbeat("a"), log.heartbeat("b")])
    seen: list[str] = []
    again = RunLog.load(store, KIND, "r1", apply=lambda item: seen.append(item.record.type))
    assert (again.version, again.last_position) == (log.version, log.last_position)
    assert (again.attempt, again.heartbeat_seq, again.started) == (0, 1, STARTED)
    assert seen == [RunStarted.TYPE, Heartbeat.TYPE, Heartbeat.TYPE]
    resumed = again.resume(checkpoint_id="c", checkpoint_position=again.last_position)
    assert (resumed.attempt, resumed.resumes_attempt, again.version) == (1, 0, 3)
    beat = again.heartbeat("c")
    assert beat.id == KIND.event_id("r1", "heartbeat", 1, 0)
    again.append([beat])
    folded = RunLog.load(store, KIND, "r1")
    assert (folded.attempt, folded.heartbeat_seq, folded.version) == (1, 0, 4)
    with pytest.raises(WrongExpectedVersion):  # the first log is behind: a second writer
        log.append([log.heartbeat("late")])


def test_the_same_start_again_is_already_appended_another_is_refused(store: EventStore) -> None:
    first = RunLog(store, KIND, "r1").start(STARTED)
    again = RunLog(store, KIND, "r1").start(STARTED)
    assert again.already_appended and again.first_position == first.first_position
    other = msgspec.structs.replace(STARTED, config={"n": 2})
    with pytest.raises(IdempotencyConflict):
        RunLog(store, KIND, "r1").start(other)


def test_finishing_twice_writes_one_finish_and_a_finished_run_is_not_resumed(
    store: EventStore,
) -> None:
    log = RunLog(store, KIND, "r1")
    log.start(STARTED)
    assert log.finish("done") is not None
    assert log.finish("done again") is None
    folded = RunLog.load(store, KIND, "r1")
    assert folded.finished is not None and folded.finish("and again") is None
    assert types(store, "r1") == [RunStarted.TYPE, RunFinished.TYPE]
    with pytest.raises(UsageError):
        folded.resume(checkpoint_id="c", checkpoint_position=1)
    with pytest.raises(UsageError):
        RunLog(store, KIND, "nothing").resume(checkpoint_id="c", checkpoint_position=1)


def test_names_and_actors_can_be_the_labs_own(store: EventStore) -> None:
    log = RunLog(store, KIND, "r1")
    log.start(STARTED, name=(0, -1, "started"))
    log.finish("x", before=[log.new(STARTED, "other", actor="me")], name=(0, 9, "finished"))
    records = store.read_stream(KIND.stream("r1"))
    assert [r.id for r in records] == [
        KIND.event_id("r1", 0, -1, "started"),
        KIND.event_id("r1", "other"),
        KIND.event_id("r1", 0, 9, "finished"),
    ]
    assert [r.actor for r in records] == ["tester", "me", "tester"]
    assert {r.run_id for r in records} == {"r1"}
    assert isinstance(list(typed(records))[-1].event, RunFinished)


def test_a_writer_without_exact_versions_appends_after_others(store: EventStore) -> None:
    loose = StreamWriter(store, "side-r1", exact=False)
    loose.append([STARTED.to_new_event()])
    store.append("side-r1", [STARTED.to_new_event()])
    loose.append([STARTED.to_new_event()])  # ANY once the stream exists
    exact = StreamWriter(store, "side-r1", version=0)
    with pytest.raises(WrongExpectedVersion):
        exact.append([STARTED.to_new_event()])
    assert exact.append([]) is None
    assert store.stream_version("side-r1") == 2
    assert RunResumed.TYPE not in types(store, "r1")
