"""The run reaper (issue #17): overdue heartbeats get ``run.RunAbandoned``, at an explicit now."""

from __future__ import annotations

import uuid

from labledger.events.runs import RunAbandoned, RunStarted, Subsystem
from labledger.events.typed import typed
from labledger.lab.reaper import overdue, reap
from labledger.lab.runs import RunKind, RunLog
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger

KIND = RunKind("test", uuid.UUID("00000000-0000-4000-8000-000000000017"), actor="tester")


def _start(store: object, run_id: str, interval: float = 10.0) -> RunLog:
    log = RunLog(store, KIND, run_id)  # type: ignore[arg-type]
    log.start(
        RunStarted(
            subsystem=Subsystem.ESPER,
            config={"n": 1},
            code_version="v",
            host="h",
            heartbeat_interval_s=interval,
        )
    )
    return log


def test_only_overdue_running_runs_are_abandoned(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        silent = _start(store, "silent", interval=10.0)  # may stay silent 30 s
        beating = _start(store, "beating", interval=100.0)  # may stay silent 300 s
        done = _start(store, "done", interval=10.0)
        beating.append([beating.heartbeat("alive")])
        done.finish("ok")
        now = store.read_stream(beating.stream)[-1].recorded_at_us + 60_000_000
        found = reap(store, now_us=now)
        assert [(o.run_id, o.abandoned) for o in found] == [("silent", True)]
        assert found[0].allowed_s == 30.0 and found[0].silent_for_s > 60.0
        events = [t.event for t in typed(store.read_stream(silent.stream))]
        assert isinstance(events[-1], RunAbandoned) and events[-1].reaper.startswith("reaper@")
        # the next pass leaves it alone: it is abandoned, not running
        assert [o.run_id for o in reap(store, now_us=now)] == []


def test_nothing_is_reaped_before_its_time_and_a_dry_run_appends_nothing(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        log = _start(store, "r1", interval=10.0)
        started = store.read_stream(log.stream)[0].recorded_at_us
        assert reap(store, now_us=started + 29_000_000) == []  # 2.9 beats: within 3
        head = store.head()
        found = reap(store, now_us=started + 31_000_000, dry_run=True)
        assert [(o.run_id, o.abandoned) for o in found] == [("r1", False)]
        assert store.head() == head


def test_a_reaped_run_can_be_resumed_as_a_new_attempt(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        _start(store, "r2")
        assert [o.abandoned for o in reap(store, now_us=2**62)] == [True]
        log = RunLog.load(store, KIND, "r2")
        resumed = log.resume(checkpoint_id="c0", checkpoint_position=1)
        assert resumed.attempt == 1


def test_the_decision_is_a_pure_function_of_rows_and_now() -> None:
    row = {
        "run_id": "x",
        "status": "running",
        "alive_at_us": 1_000_000,
        "started_at_us": 0,
        "heartbeat_interval_s": 2.0,
    }
    assert overdue([row], now_us=7_000_000) == []  # silent 6 s, allowed 3 × 2 s
    assert [s for _, s, _ in overdue([row], now_us=7_000_001)] == [6.000001]
    assert overdue([{**row, "status": "finished"}], now_us=10**12) == []
