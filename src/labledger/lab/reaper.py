"""The run reaper: a running run whose heartbeats are overdue gets ``run.RunAbandoned``.

A run promises a heartbeat every ``heartbeat_interval_s`` (in its
``run.RunStarted``). It is *overdue* when it is ``running`` or ``resumed`` and
its last sign of life — the recorded time of its start, last heartbeat or last
resume, as the log holds it (the ``runs`` read model's ``alive_at_us``) — lies
more than ``MISSED_BEATS`` intervals before ``now``. ``now`` is the caller's:
``runs reap --now`` and tests pass it; by default it is the wall clock. Nothing
else enters the decision, so the same log and the same ``now`` reap the same runs.

The ``run.RunAbandoned`` goes to the stream of the run's ``run.RunStarted`` at
the exact version the reaper read. A run that beats in between makes that
append conflict: the run is alive after all and is left alone. Two reapers
racing: one wins, the other conflicts and skips. A reaped run can still be
resumed (``labledger resume RUN_ID``), which starts a new attempt.
"""

from __future__ import annotations

import socket
import time
import uuid

import msgspec

from labledger.errors import IdempotencyConflict, WrongExpectedVersion
from labledger.events.runs import RunAbandoned
from labledger.projections import ProjectionEngine, all_projections
from labledger.projections.runs import run_rows
from labledger.store import EventStore

MISSED_BEATS = 3.0
"""How many promised heartbeats may be missed before a run is abandoned."""
REAPER_NAMESPACE = uuid.UUID("5f0c2d1e-7d1a-4f6e-9c1b-17a0000000ab")
"""The namespace of abandonment ids: ``uuid5(ns, "<run_id>/abandoned/<attempt>")``. Fixed."""


class Overdue(msgspec.Struct, frozen=True, kw_only=True):
    """A run the reaper found silent too long (and, unless a dry run, abandoned)."""

    run_id: str
    subsystem: str | None
    stream: str
    attempt: int
    last_heartbeat_seq: int | None
    silent_for_s: float
    allowed_s: float
    abandoned: bool
    """False in a dry run, or when the run proved alive (its stream moved)."""


def _reaper_name() -> str:
    return f"reaper@{socket.gethostname() or 'localhost'}"


def overdue(
    rows: list[dict[str, object]], now_us: int, missed_beats: float = MISSED_BEATS
) -> list[tuple[dict[str, object], float, float]]:
    """The pure decision: ``(row, silent_for_s, allowed_s)`` of each overdue run row."""
    found = []
    for row in rows:
        alive = row.get("alive_at_us") or row.get("started_at_us")
        if row["status"] not in ("running", "resumed") or not isinstance(alive, int):
            continue
        interval = row.get("heartbeat_interval_s")
        allowed = missed_beats * (interval if isinstance(interval, float) else 30.0)
        silent = max(0.0, (now_us - alive) / 1e6)
        if silent > allowed:
            found.append((row, silent, allowed))
    return found


def reap(
    store: EventStore,
    *,
    now_us: int | None = None,
    missed_beats: float = MISSED_BEATS,
    dry_run: bool = False,
    reaper: str | None = None,
) -> list[Overdue]:
    """Abandon every run whose heartbeats are overdue at ``now_us``.

    Args:
        store: the ledger (the ``runs`` read model is caught up first).
        now_us: the time to judge at, in µs since the epoch (default: the wall clock).
        missed_beats: promised heartbeats that may be missed.
        dry_run: report, append nothing.
        reaper: who reaps (default ``reaper@<host>``).

    Returns:
        The overdue runs, oldest first.
    """
    now = time.time_ns() // 1000 if now_us is None else now_us
    engine = ProjectionEngine(store, all_projections())
    engine.catch_up("runs")
    with engine.read("runs") as tx:
        rows = run_rows(tx)
    out = []
    for row, silent, allowed in overdue(rows, now, missed_beats):
        abandoned = not dry_run and _abandon(store, row, silent, reaper or _reaper_name())
        out.append(
            Overdue(
                run_id=str(row["run_id"]),
                subsystem=row["subsystem"],  # type: ignore[arg-type]
                stream=str(row["stream"]),
                attempt=int(row["attempt"]),  # type: ignore[call-overload]
                last_heartbeat_seq=row["last_heartbeat_seq"],  # type: ignore[arg-type]
                silent_for_s=round(silent, 3),
                allowed_s=allowed,
                abandoned=abandoned,
            )
        )
    return out


def _abandon(store: EventStore, row: dict[str, object], silent: float, reaper: str) -> bool:
    stream, run_id, attempt = str(row["stream"]), str(row["run_id"]), int(row["attempt"])  # type: ignore[call-overload]
    seq = row["last_heartbeat_seq"]
    event = RunAbandoned(
        attempt=attempt,
        last_heartbeat_seq=seq if isinstance(seq, int) else None,
        silent_for_s=round(silent, 3),
        reaper=reaper,
    )
    new = event.to_new_event(
        id=str(uuid.uuid5(REAPER_NAMESPACE, f"{run_id}/abandoned/{attempt}")),
        run_id=run_id,
        actor=reaper,
    )
    version = store.stream_version(stream)
    tail = store.read_stream(stream, max(version, 0), limit=1)
    if version < 0 or (tail and tail[0].position > int(row["last_position"])):  # type: ignore[call-overload]
        return False  # the stream moved after the read model was read: not silent
    try:
        store.append(stream, [new], version)
    except (WrongExpectedVersion, IdempotencyConflict):
        return False  # the run moved meanwhile: it is alive, or another reaper won
    return True


__all__ = ["MISSED_BEATS", "Overdue", "overdue", "reap"]
