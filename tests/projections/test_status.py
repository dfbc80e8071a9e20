"""Truthful projection health (issue #17): behind-and-unfollowed is ``idle``, not ``stalled``."""

from __future__ import annotations

from labledger.projections import ProjectionEngine
from labledger.projections.status import status
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import fresh_ledger
from tests.projections.test_engine import BeatCounter, _beats


def test_a_projection_nobody_follows_is_idle_not_stalled(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        engine = ProjectionEngine(store, [BeatCounter()])
        _beats(store, 2)
        engine.catch_up("beats")  # a one-shot run, like `project run`, then it ends
        _beats(store, 2)  # appended after the runner left
        far_future = 2**62
        row = status(engine, stall_after_s=1, now_us=far_future)[0]
        assert (row.state, row.stalled, row.followed, row.lag_events) == ("idle", False, False, 2)


def test_a_followed_projection_that_stops_moving_is_stalled(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        engine = ProjectionEngine(store, [BeatCounter()])
        _beats(store, 2)
        engine.catch_up("beats")
        _beats(store, 2)
        far_future = 2**62
        row = status(engine, stall_after_s=1, following=["beats"], now_us=far_future)[0]
        assert (row.state, row.stalled, row.followed) == ("stalled", True, True)
        # the same projection judged while its checkpoint just moved: behind, not stalled
        cp_time = status(engine, stall_after_s=1e9, following=["beats"])[0]
        assert (cp_time.state, cp_time.stalled) == ("behind", False)


def test_a_runner_that_saw_an_event_and_left_it_counts_as_following(backend: Backend) -> None:
    # The log's own evidence: the checkpoint was written after the first pending
    # event was recorded, so a runner was there and did not apply it.
    with fresh_ledger(backend) as store:
        engine = ProjectionEngine(store, [BeatCounter()])
        _beats(store, 4)
        engine.catch_up("beats", until=2)
        row = status(engine, stall_after_s=1, now_us=2**62)[0]
        assert (row.state, row.followed) == ("stalled", True)
        engine.catch_up("beats")
        assert status(engine, stall_after_s=1, now_us=2**62)[0].state == "current"
