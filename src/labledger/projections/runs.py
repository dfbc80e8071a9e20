"""runs: per run its subsystem, status, attempt, config, last heartbeat, metrics, event count.

A run is identified by the envelope's ``run_id`` (falling back to the stream
of its ``run.RunStarted``). Status: ``running`` after it starts, ``resumed``
after a new attempt continues it, ``finished`` or ``abandoned`` at the end.

The key metrics of a run, for ``runs`` and ``runs compare``: a tracked run's
own (the last value of each metric it logged, ``track.MetricsLogged``, and
``last_step``); Esper's last ``loss``, ``accuracy`` and ``epoch`` (from
``esper.SystemStateReported``); ToolGen's ``best_fitness`` and
``tools_evaluated``; D-REAM's ``generations`` completed.

``alive_at_us`` is the run's last sign of life (its start, last heartbeat or
last resume, as recorded by the log): the reaper (``labledger.lab.reaper``)
judges silence from it and ``heartbeat_interval_s``. ``config`` and
``metrics`` are canonical JSON text.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.events import Event, all_types
from labledger.events.dream import GenerationCompleted
from labledger.events.esper import SystemStateReported
from labledger.events.runs import Heartbeat, RunAbandoned, RunFinished, RunResumed, RunStarted
from labledger.events.toolgen import ToolEvaluated
from labledger.events.track import MetricsLogged
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx


class RunsProjection(Projection):
    name = "runs"
    version = 2
    handles = tuple(all_types())  # counts every typed event of a run
    description = "per run: subsystem, status, attempt, config, last heartbeat, metrics, events"

    def define(self, tables: TableSet) -> None:
        tables.add(
            "runs",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("subsystem", sa.Text),
            sa.Column("stream", sa.Text),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("outcome", sa.Text),
            sa.Column("attempt", sa.Integer, nullable=False),
            sa.Column("code_version", sa.Text),
            sa.Column("host", sa.Text),
            sa.Column("started_position", sa.BigInteger),
            sa.Column("started_at_us", sa.BigInteger),
            sa.Column("last_heartbeat_seq", sa.BigInteger),
            sa.Column("last_heartbeat_at_us", sa.BigInteger),
            sa.Column("ended_at_us", sa.BigInteger),
            sa.Column("alive_at_us", sa.BigInteger),
            sa.Column("heartbeat_interval_s", sa.Float),
            sa.Column("config", sa.Text),
            sa.Column("metrics", sa.Text),
            sa.Column("last_step", sa.BigInteger),
            sa.Column("last_position", sa.BigInteger, nullable=False),
            sa.Column("events", sa.BigInteger, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        record, event = item.record, item.event
        run_id = record.run_id or (record.stream if isinstance(event, RunStarted) else None)
        if run_id is None:
            return
        row = tx.get("runs", run_id=run_id)
        if row is None:
            tx.insert(
                "runs",
                run_id=run_id,
                status="unknown",
                attempt=0,
                events=0,
                last_position=record.position,
            )
            row = tx.get("runs", run_id=run_id)
            assert row is not None
        changes: dict[str, object] = {"events": row.events + 1, "last_position": record.position}
        at = record.recorded_at_us
        match event:
            case RunStarted():
                changes |= {
                    "subsystem": event.subsystem.value,
                    "stream": record.stream,
                    "status": "running",
                    "code_version": event.code_version,
                    "host": event.host,
                    "started_position": record.position,
                    "started_at_us": at,
                    "alive_at_us": at,
                    "heartbeat_interval_s": event.heartbeat_interval_s,
                    "config": _json(event.config),
                }
            case Heartbeat():
                changes |= {
                    "last_heartbeat_seq": event.seq,
                    "last_heartbeat_at_us": at,
                    "alive_at_us": at,
                }
            case MetricsLogged():
                changes |= _metrics(row, event)
            case SystemStateReported() | ToolEvaluated() | GenerationCompleted():
                changes["metrics"] = _json(_lab_metrics(row, event))
            case RunFinished():
                changes |= {"status": "finished", "outcome": event.outcome.value, "ended_at_us": at}
            case RunAbandoned():
                changes |= {"status": "abandoned", "ended_at_us": at}
            case RunResumed():
                changes |= {
                    "status": "resumed",
                    "attempt": event.attempt,
                    "ended_at_us": None,
                    "alive_at_us": at,
                }
            case _:
                pass
        tx.update("runs", {"run_id": run_id}, **changes)


def _json(value: object) -> str:
    return msgspec.json.encode(value, order="sorted").decode()


def _metrics(row: Any, event: MetricsLogged) -> dict[str, object]:
    """The last value of each metric, and the last step, after one flush."""
    last: dict[str, float] = msgspec.json.decode(row.metrics) if row.metrics else {}
    for point in event.points:
        last.update(point.values)
    return {"metrics": _json(last), "last_step": event.points[-1].step}


def _lab_metrics(
    row: Any, event: SystemStateReported | ToolEvaluated | GenerationCompleted
) -> dict[str, float]:
    """A lab run's key metrics after one of its measuring events."""
    last: dict[str, float] = msgspec.json.decode(row.metrics) if row.metrics else {}
    match event:
        case SystemStateReported():
            m = event.metrics
            last |= {"loss": m.loss, "accuracy": m.accuracy, "epoch": float(m.epoch)}
        case ToolEvaluated():
            last["best_fitness"] = max(last.get("best_fitness", event.fitness), event.fitness)
            last["tools_evaluated"] = last.get("tools_evaluated", 0.0) + 1
        case GenerationCompleted():
            last["generations"] = max(last.get("generations", 0.0), event.generation + 1.0)
    return last


def decoded(row: dict[str, Any]) -> dict[str, Any]:
    """A row with ``config`` and ``metrics`` as dicts (empty when absent)."""
    return {
        **row,
        "config": msgspec.json.decode(row["config"]) if row.get("config") else {},
        "metrics": msgspec.json.decode(row["metrics"]) if row.get("metrics") else {},
    }


def run_rows(
    tx: Tx, status: str | None = None, subsystem: str | None = None
) -> list[dict[str, Any]]:
    """Rows of the ``runs`` read model, oldest first, optionally filtered (JSON columns as text)."""
    table = tx.table("runs")
    query = sa.select(table).order_by(table.c.started_at_us, table.c.run_id)
    if status is not None:
        query = query.where(table.c.status == status)
    if subsystem is not None:
        query = query.where(table.c.subsystem == subsystem)
    return [dict(row._mapping) for row in tx.query(query)]


def run_row(tx: Tx, run_id: str) -> dict[str, Any] | None:
    """One run's row, or ``None``."""
    row = tx.get("runs", run_id=run_id)
    return dict(row._mapping) if row is not None else None
