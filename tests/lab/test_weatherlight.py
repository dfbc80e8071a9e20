"""Weatherlight emergency routing (issue #7): exactly the CRITICAL packets and rejections,
once each, resuming from the emergency stream itself after a restart."""

from __future__ import annotations

import anyio
import anyio.to_thread

from labledger.events import decode
from labledger.events.telemetry import (
    EventLevel,
    HealthStatus,
    SystemHealth,
    TelemetryEvent,
    TelemetryPacket,
    TelemetryPriority,
)
from labledger.events.weatherlight import EmergencyKind, EmergencyRouted
from labledger.lab.esper.weatherlight import EMERGENCY_STREAM, Weatherlight, counters
from labledger.store import EventStore
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import Log, fresh_ledger
from tests.projections.test_esper_training import append_esper_log, command


def packet(priority: TelemetryPriority, *critical: str) -> TelemetryPacket:
    return TelemetryPacket(
        source="kasmina",
        priority=priority,
        health=SystemHealth(status=HealthStatus.DEGRADED, indicators={}),
        metrics=[],
        events=[
            TelemetryEvent(description=d, level=EventLevel.CRITICAL, attributes={})
            for d in critical
        ],
    )


P = TelemetryPriority
LOG: Log = [
    ("r1", packet(P.NORMAL)),  # 1
    ("r1", packet(P.CRITICAL, "gate_failure")),  # 2  routed
    ("r1", packet(P.HIGH, "command_rejected")),  # 3  HIGH: not routed (never recomputed)
    ("r1|unsigned", command("forged")),  # 4  refused → security.CommandRejected, routed
    ("r1", command("fine")),  # 5  admitted
    ("r1", command("fine2")),  # 6
    ("r1|replay", command("again")),  # 7  replayed nonce → rejected, routed
    ("r2", packet(P.CRITICAL)),  # 8  routed (no CRITICAL event: reason "critical")
    ("r2", packet(P.LOW)),  # 9
]


def routed(store: EventStore) -> list[EmergencyRouted]:
    out = []
    for record in store.read_stream(EMERGENCY_STREAM):
        event = decode(record.type, record.schema_version, record.data)
        assert isinstance(event, EmergencyRouted)
        out.append(event)
    return out


def test_routes_exactly_critical_packets_and_rejections(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        assert append_esper_log(store, LOG) == list(range(1, 10))
        assert Weatherlight(store).drain() == 4
        got = [(r.source_position, r.kind, r.priority, r.reason) for r in routed(store)]
        assert got == [
            (2, EmergencyKind.TELEMETRY, P.CRITICAL, "gate_failure"),
            (4, EmergencyKind.COMMAND_REJECTED, None, "missing_signature"),
            (7, EmergencyKind.COMMAND_REJECTED, None, "replayed_nonce"),
            (8, EmergencyKind.TELEMETRY, P.CRITICAL, "critical"),
        ]
        records = store.read_stream(EMERGENCY_STREAM)
        assert {r.run_id for r in records} == {"r1", "r2"}
        assert counters(store) == {
            "total": 4,
            "priority.CRITICAL": 2,
            "reason.telemetry.gate_failure": 1,
            "reason.telemetry.critical": 1,
            "reason.command_rejected.missing_signature": 1,
            "reason.command_rejected.replayed_nonce": 1,
        }


def test_restart_resumes_without_duplicates(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        append_esper_log(store, LOG[:4])
        assert Weatherlight(store).drain() == 2
        append_esper_log(store, LOG[4:])
        again = Weatherlight(store)  # a restart: the checkpoint comes from the stream
        assert again.checkpoint.source_position == 4
        assert again.drain() == 2
        assert Weatherlight(store).drain() == 0
        got = routed(store)  # positions 5 and 6 are the first two routed records
        assert [r.reason for r in got] == [
            "gate_failure",
            "missing_signature",
            "replayed_nonce",
            "critical",
        ]
        assert [r.source_position for r in got] == [2, 4, 9, 10]
        assert counters(store)["total"] == 4


def test_racing_workers_route_each_event_once(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        append_esper_log(store, LOG)
        a, b = Weatherlight(store), Weatherlight(store)
        records = list(store.read_all())
        for record in records:  # interleaved: b lags one event behind a
            a.handle(record)
            b.handle(record)
        assert [r.source_position for r in routed(store)] == [2, 4, 7, 8]
        assert [r.counters["total"] for r in routed(store)] == [1, 2, 3, 4]


def test_live_worker_follows_appends_and_stops(backend: Backend) -> None:
    async def main(store: EventStore) -> list[str]:
        seen: list[str] = []
        stop = anyio.Event()

        def on_routed(event: EmergencyRouted) -> None:
            seen.append(event.reason)
            if len(seen) == 4:
                stop.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(Weatherlight(store).run, stop, on_routed)
            await anyio.to_thread.run_sync(append_esper_log, store, LOG)
            with anyio.fail_after(20):
                await stop.wait()
        return seen

    with fresh_ledger(backend) as store:
        reasons = ["gate_failure", "missing_signature", "replayed_nonce", "critical"]
        assert anyio.run(main, store) == reasons  # positions interleave with the routing
        assert Weatherlight(store).drain() == 0
        assert [r.reason for r in routed(store)] == reasons
        for r in routed(store):
            (source,) = store.read_all(r.source_position, limit=1)
            assert (source.type, source.stream) == (r.source_type, r.source_stream)
