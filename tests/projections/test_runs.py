"""The runs read model (issue #4)."""

from __future__ import annotations

import sqlalchemy as sa
from hypothesis import strategies as st

from labledger import EventStore
from labledger.events import Event
from labledger.events.runs import (
    Heartbeat,
    RunAbandoned,
    RunFinished,
    RunOutcome,
    RunResumed,
    RunStarted,
    Subsystem,
)
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.runs import RunsProjection
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import Log, ProjectionContract, fresh_ledger

RUNS = ["r1", "r2", "r3"]


def _started() -> RunStarted:
    return RunStarted(subsystem=Subsystem.ESPER, config={"k": 1}, code_version="v1", host="h")


@st.composite
def run_logs(draw: st.DrawFn) -> Log:
    log: list[tuple[str, Event]] = []
    for _ in range(draw(st.integers(0, 14))):
        run = draw(st.sampled_from(RUNS))
        event = draw(
            st.sampled_from(["start", "beat", "finish", "abandon", "resume"]).map(
                lambda kind: {
                    "start": _started(),
                    "beat": Heartbeat(seq=len(log)),
                    "finish": RunFinished(outcome=RunOutcome.SUCCEEDED),
                    "abandon": RunAbandoned(
                        last_heartbeat_seq=None, silent_for_s=90.0, reaper="reaper"
                    ),
                    "resume": RunResumed(
                        attempt=2, resumes_attempt=1, checkpoint_id="c", checkpoint_position=1
                    ),
                }[kind]
            )
        )
        log.append((run, event))
    return log


class RunsContract(ProjectionContract):
    def make_projection(self) -> Projection:
        return RunsProjection()

    def logs(self) -> st.SearchStrategy[Log]:
        return run_logs()

    def prepare(self, store: EventStore, log: Log) -> None:
        for stream, event in log:
            store.append(f"run-{stream}", [event.to_new_event(run_id=stream)])


class TestSqliteRuns(RunsContract):
    backend_fixture = "sqlite_backend"


class TestPostgresRuns(RunsContract):
    backend_fixture = "postgres_backend"


def test_run_lifecycle_against_a_plain_fold(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        script: list[tuple[str, Event]] = [
            ("a", _started()),
            ("a", Heartbeat(seq=0)),
            ("b", _started()),
            ("a", Heartbeat(seq=1)),
            ("b", RunAbandoned(last_heartbeat_seq=None, silent_for_s=120.0, reaper="r")),
            ("a", RunFinished(outcome=RunOutcome.FAILED)),
            (
                "b",
                RunResumed(attempt=1, resumes_attempt=0, checkpoint_id="c", checkpoint_position=3),
            ),
        ]
        for run, event in script:
            store.append(f"run-{run}", [event.to_new_event(run_id=run)])
        engine = ProjectionEngine(store, [RunsProjection()])
        engine.catch_up("runs")
        with engine.read("runs") as tx:
            rows = {r.run_id: r for r in tx.conn.execute(sa.select(tx.table("runs")))}
        assert (rows["a"].status, rows["a"].outcome, rows["a"].events) == (
            "failed" and "finished",
            "failed",
            4,
        )
        assert (rows["a"].last_heartbeat_seq, rows["a"].subsystem) == (1, "esper")
        assert (rows["b"].status, rows["b"].attempt, rows["b"].events) == ("resumed", 1, 3)
