"""The telemetry ordering rules of seed 003 (issue #7): contract, and violations found exactly."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import strategies as st

from labledger import EventStore
from labledger.events import Event
from labledger.events.telemetry import (
    EventLevel,
    HealthStatus,
    SystemHealth,
    TelemetryEvent,
    TelemetryPacket,
    TelemetryPriority,
)
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.telemetry_contract import (
    BATCH_TAIL,
    TelemetryContractProjection,
    kind_counts,
    violations,
)
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import Log, ProjectionContract, fresh_ledger
from tests.cli.test_cli import cli

Spec = tuple[str, dict[str, str]]


def packet(*events: str | Spec) -> TelemetryPacket:
    """A packet whose events are ``"KIND"`` or ``("KIND", {attributes})``."""
    items = [(e, {}) if isinstance(e, str) else e for e in events]
    return TelemetryPacket(
        source="tolaria",
        priority=TelemetryPriority.NORMAL,
        health=SystemHealth(status=HealthStatus.HEALTHY, indicators={}),
        metrics=[],
        events=[
            TelemetryEvent(description=d, level=EventLevel.INFO, attributes=a) for d, a in items
        ],
    )


def epoch(n: int) -> list[Spec]:
    return [
        ("EPOCH_COMPLETED", {"epoch": str(n)}),
        ("ANALYTICS_SNAPSHOT", {"kind": "last_action", "epoch": str(n)}),
    ]


TAIL = [
    "VALUE_COLLAPSE_DETECTED",
    "PPO_UPDATE_COMPLETED",
    "ANALYTICS_SNAPSHOT:batch_stats",
    "BATCH_EPOCH_COMPLETED",
    ("ANALYTICS_SNAPSHOT", {"kind": "action_distribution"}),
]


Found = list[tuple[str, str, int, int]]


def checked(backend: Backend, log: Log) -> tuple[Found, dict[str, dict[str, int]]]:
    """(run, rule, position, index) of every violation, and the kind counts."""
    with fresh_ledger(backend) as store:
        for run, event in log:
            store.append(f"tolaria-{run}", [event.to_new_event(run_id=run)])
        engine = ProjectionEngine(store, [TelemetryContractProjection()])
        engine.catch_up("telemetry_contract")
        with engine.read("telemetry_contract") as tx:
            found = [(v.run_id, v.rule, v.position, v.index) for v in violations(tx)]
            return found, kind_counts(tx)


# -- contract on generated logs ----------------------------------------------------

KINDS = [
    "EPOCH_COMPLETED",
    "ANALYTICS_SNAPSHOT:last_action",
    *[k if isinstance(k, str) else "ANALYTICS_SNAPSHOT:action_distribution" for k in TAIL],
    "SEED_GERMINATED",
]


@st.composite
def telemetry_logs(draw: st.DrawFn) -> Log:
    log: list[tuple[str, Event]] = []
    for _ in range(draw(st.integers(0, 10))):
        specs: list[Spec] = []
        for _ in range(draw(st.integers(0, 4))):
            attrs: dict[str, str] = {}
            if draw(st.booleans()):
                attrs["epoch"] = draw(st.sampled_from(["1", "2"]))
            if draw(st.booleans()):
                attrs["batch"] = draw(st.sampled_from(["b1", "b2"]))
            specs.append((draw(st.sampled_from(KINDS)), attrs))
        log.append((draw(st.sampled_from(["r1", "r2"])), packet(*specs)))
    return log


class TelemetryContract(ProjectionContract):
    def make_projection(self) -> Projection:
        return TelemetryContractProjection()

    def logs(self) -> st.SearchStrategy[Log]:
        return telemetry_logs()

    def prepare(self, store: EventStore, log: Log) -> None:
        for run, event in log:
            store.append(f"tolaria-{run}", [event.to_new_event(run_id=run)])


class TestSqliteTelemetryContract(TelemetryContract):
    backend_fixture = "sqlite_backend"


class TestPostgresTelemetryContract(TelemetryContract):
    backend_fixture = "postgres_backend"


# -- hand-written sequences ----------------------------------------------------------


def test_the_seed_baseline_run_is_valid(backend: Backend) -> None:
    # seed 003's baseline: 5 epochs, then one batch tail, split over packets as Tolaria would
    log: Log = [("r1", packet(*epoch(n), "SEED_STAGE_CHANGED")) for n in range(1, 6)]
    log += [("r1", packet(*TAIL[:2])), ("r1", packet(*TAIL[2:]))]
    found, all_counts = checked(backend, log)
    assert found == []
    counts = all_counts["r1"]
    assert counts["EPOCH_COMPLETED"] == 5 and counts["ANALYTICS_SNAPSHOT:last_action"] == 5
    assert counts["PPO_UPDATE_COMPLETED"] == 1 and counts["SEED_STAGE_CHANGED"] == 5


def test_optional_tail_events_may_be_absent_and_batches_repeat(backend: Backend) -> None:
    log: Log = [
        ("r1", packet(*TAIL[1:4])),  # no value collapse, no action distribution
        ("r1", packet(*TAIL)),  # the next batch (implicit), complete
        (
            "r2",
            packet(
                *[
                    (k, {"batch": "7"})
                    for k in ("PPO_UPDATE_COMPLETED", "ANALYTICS_SNAPSHOT:batch_stats")
                ]
            ),
        ),
        ("r2", packet(("BATCH_EPOCH_COMPLETED", {"batch": "7"}))),
    ]
    assert checked(backend, log)[0] == []


def test_violations_are_found_exactly(backend: Backend) -> None:
    log: Log = [
        # 1: last action of epoch 1 before its EPOCH_COMPLETED; then epoch 1 completes
        (
            "r1",
            packet(
                ("ANALYTICS_SNAPSHOT:last_action", {"epoch": "1"}),
                ("EPOCH_COMPLETED", {"epoch": "1"}),
            ),
        ),
        # 2: epoch 1 completed again, and a second last-action snapshot for it
        ("r1", packet(*epoch(1))),
        # 3: r2's batch stats before its PPO update; the update then comes too late
        ("r2", packet("ANALYTICS_SNAPSHOT:batch_stats", "PPO_UPDATE_COMPLETED")),
        # 4: r2 value collapse after the PPO update (same batch), BATCH_EPOCH_COMPLETED fine
        ("r2", packet("VALUE_COLLAPSE_DETECTED", "BATCH_EPOCH_COMPLETED")),
        # 5: r3 BATCH_EPOCH_COMPLETED with nothing before it; last action before any epoch
        ("r3", packet(("BATCH_EPOCH_COMPLETED", {"batch": "x"}), "ANALYTICS_SNAPSHOT:last_action")),
        # 6: batch x of r3 again (explicit ids do not repeat)
        ("r3", packet(("PPO_UPDATE_COMPLETED", {"batch": "x"}))),
    ]
    assert checked(backend, log)[0] == [
        ("r1", "epoch_before_last_action", 1, 0),
        ("r1", "epoch_completed_once", 2, 0),
        ("r1", "last_action_once", 2, 1),
        ("r2", "batch_tail_order", 3, 0),  # batch stats without the PPO update
        ("r2", "batch_tail_order", 3, 1),  # PPO update after batch stats
        ("r2", "batch_tail_order", 4, 0),  # value collapse after batch stats
        ("r3", "batch_tail_order", 5, 0),  # missing PPO update and batch stats
        ("r3", "epoch_before_last_action", 5, 1),
        ("r3", "batch_tail_order", 6, 0),
    ]


def test_tail_order_is_the_seed_order() -> None:
    assert BATCH_TAIL == (
        "VALUE_COLLAPSE_DETECTED",
        "PPO_UPDATE_COMPLETED",
        "ANALYTICS_SNAPSHOT:batch_stats",
        "BATCH_EPOCH_COMPLETED",
        "ANALYTICS_SNAPSHOT:action_distribution",
    )


def test_cli_telemetry_check(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    good = packet(*epoch(1))
    bad = packet(("ANALYTICS_SNAPSHOT:last_action", {"epoch": "9"}))
    lines = b"".join(
        b'{"type":"esper.TelemetryPacket","schema_version":2,"run_id":"%s","data":%s}\n'
        % (run.encode(), msgspec.json.encode(p))
        for run, p in (("ok", good), ("bad", bad))
    )
    assert cli(url, "append", "tolaria", stdin=lines, capsys=capsys)[0] == 0
    code, out, err = cli(url, "esper", "telemetry-check", "ok", capsys=capsys)
    assert (code, out) == (0, "") and "0 violation(s)" in err
    code, out, err = cli(url, "esper", "telemetry-check", capsys=capsys)
    assert code == 1 and '"rule":"epoch_before_last_action"' in out and '"run_id":"bad"' in out
