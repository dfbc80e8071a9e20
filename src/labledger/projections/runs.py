"""runs: per run its subsystem, status, attempt, last heartbeat and event count.

A run is identified by the envelope's ``run_id`` (falling back to the stream
of its ``run.RunStarted``). Status: ``running`` after it starts, ``resumed``
after a new attempt continues it, ``finished`` or ``abandoned`` at the end.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from labledger.events import Event, all_types
from labledger.events.runs import Heartbeat, RunAbandoned, RunFinished, RunResumed, RunStarted
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx


class RunsProjection(Projection):
    name = "runs"
    version = 1
    handles = tuple(all_types())  # counts every typed event of a run
    description = "per run: subsystem, status, attempt, last heartbeat, event count"

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
                }
            case Heartbeat():
                changes |= {"last_heartbeat_seq": event.seq, "last_heartbeat_at_us": at}
            case RunFinished():
                changes |= {"status": "finished", "outcome": event.outcome.value, "ended_at_us": at}
            case RunAbandoned():
                changes |= {"status": "abandoned", "ended_at_us": at}
            case RunResumed():
                changes |= {"status": "resumed", "attempt": event.attempt, "ended_at_us": None}
            case _:
                pass
        tx.update("runs", {"run_id": run_id}, **changes)


def run_rows(
    tx: Tx, status: str | None = None, subsystem: str | None = None
) -> list[dict[str, Any]]:
    """Rows of the ``runs`` read model, oldest first, optionally filtered."""
    table = tx.table("runs")
    query = sa.select(table).order_by(table.c.started_at_us, table.c.run_id)
    if status is not None:
        query = query.where(table.c.status == status)
    if subsystem is not None:
        query = query.where(table.c.subsystem == subsystem)
    return [dict(row._mapping) for row in tx.query(query)]
