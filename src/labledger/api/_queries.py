"""Reads the API needs beyond the projections' own query functions.

Runs come from the ``runs`` read model. A run's events live in several
streams (``run-…``, ``dream-…``, …) tied together by the envelope's
``run_id``; the store indexes positions, not run ids, so a run's events are
found by scanning the log between the run's first and last positions (both
kept by the read model) — bounded by the run's own span, and paged.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from labledger.events.dream import SafetyCapExceeded, TrialRecorded
from labledger.events.esper import (
    AdaptationCommand,
    FieldReport,
    SeedFossilized,
    SeedGerminated,
    SeedPruned,
    SeedStageChanged,
    SystemStateReported,
)
from labledger.events.typed import decode_record
from labledger.projections.base import Tx
from labledger.store import EventStore, RecordedEvent

MAX_PAGE = 1000
SERIES_LIMIT = 20_000


def recent_commands(tx: Tx, run_ids: Collection[str] | None, limit: int) -> list[dict[str, Any]]:
    """The latest ``limit`` decisions (commands) of the audit read model, newest first."""
    commands = tx.table("commands")
    query = sa.select(commands).order_by(commands.c.position.desc()).limit(limit)
    if run_ids is not None:
        query = query.where(commands.c.run_id.in_(list(run_ids)))
    return [dict(row._mapping) for row in tx.conn.execute(query)]


def run_row(tx: Tx, run_id: str) -> dict[str, Any] | None:
    """One run of the ``runs`` read model, or None."""
    row = tx.get("runs", run_id=run_id)
    return None if row is None else dict(row._mapping)


def run_events(
    store: EventStore,
    run: dict[str, Any],
    from_position: int,
    limit: int,
    types: Collection[str] | None = None,
) -> tuple[list[RecordedEvent], int | None]:
    """Events of ``run`` from ``from_position``: up to ``limit``, and the next page's start.

    Returns:
        The events, and the position to ask for next (None after the run's last event).
    """
    start = max(from_position, run.get("started_position") or 1, 1)
    last = int(run["last_position"])
    found: list[RecordedEvent] = []
    for record in store.read_all(start, batch_size=min(MAX_PAGE, max(limit, 100))):
        if record.position > last:
            return found, None
        if record.run_id == run["run_id"] and (types is None or record.type in types):
            found.append(record)
            if len(found) >= limit:
                nxt = record.position + 1
                return found, (nxt if nxt <= last else None)
    return found, None


_SEED_TYPES = (SeedGerminated, SeedStageChanged, SeedFossilized, SeedPruned)
_ESPER_TYPES = frozenset(
    cls.TYPE for cls in (AdaptationCommand, FieldReport, SystemStateReported, *_SEED_TYPES)
)


def esper_series(store: EventStore, run: dict[str, Any]) -> dict[str, Any]:
    """A run's training curve with its seed lifecycle events and commands marked.

    Returns:
        ``metrics`` (epoch, step, loss, accuracy, position), ``markers`` (epoch,
        kind, label, position — commands take the epoch of the last reported
        state before them) and ``field_reports``.
    """
    records, _ = run_events(store, run, 1, SERIES_LIMIT, _ESPER_TYPES)
    metrics: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    epoch = 0
    for record in records:
        event = decode_record(record).event
        at = record.position
        if isinstance(event, SystemStateReported):
            m = event.metrics
            epoch = m.epoch
            metrics.append(
                {
                    "epoch": m.epoch,
                    "step": m.step,
                    "loss": m.loss,
                    "accuracy": m.accuracy,
                    "position": at,
                }
            )
        elif isinstance(event, AdaptationCommand):
            label = f"{event.operation.value} {event.target_slot}"
            markers.append(
                {
                    "epoch": epoch,
                    "kind": "command",
                    "label": label,
                    "position": at,
                    "command_id": event.command_id,
                }
            )
        elif isinstance(event, FieldReport):
            reports.append(
                {
                    "command_id": event.command_id,
                    "outcome": event.outcome.value,
                    "loss_delta": event.delta.loss_delta,
                    "accuracy_delta": event.delta.accuracy_delta,
                    "observation_window_epochs": event.delta.observation_window_epochs,
                    "position": at,
                }
            )
        elif isinstance(event, _SEED_TYPES):
            kind = type(event).__name__.removeprefix("Seed").lower()
            markers.append(
                {
                    "epoch": event.epoch,
                    "kind": kind,
                    "label": f"{kind} {event.slot}",
                    "position": at,
                    "command_id": event.command_id,
                }
            )
    return {
        "run_id": run["run_id"],
        "metrics": metrics,
        "markers": markers,
        "field_reports": reports,
    }


def dream_trials(store: EventStore, run: dict[str, Any]) -> tuple[list[dict[str, Any]], set[Any]]:
    """A D-REAM run's trials as recorded (not as the read models merge runs), and the
    (domain, cand_id) pairs that exceeded a safety cap in it.

    Returns:
        Trials (run_id, domain, regime, cand_id, generation, genome, kpis,
        position) in log order, and the capped pairs.
    """
    types = {TrialRecorded.TYPE, SafetyCapExceeded.TYPE}
    records, _ = run_events(store, run, 1, SERIES_LIMIT, types)
    trials: list[dict[str, Any]] = []
    capped: set[Any] = set()
    for record in records:
        event = decode_record(record).event
        if isinstance(event, SafetyCapExceeded):
            capped.add((event.domain, event.cand_id))
        elif isinstance(event, TrialRecorded):
            trials.append(
                {
                    "run_id": run["run_id"],
                    "domain": event.domain,
                    "regime": str(event.regime),
                    "cand_id": event.cand_id,
                    "generation": event.generation,
                    "genome": dict(event.genome),
                    "kpis": {f: getattr(event.kpis, f) for f in event.kpis.__struct_fields__},
                    "position": record.position,
                }
            )
    return trials, capped
