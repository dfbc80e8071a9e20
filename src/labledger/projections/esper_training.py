"""esper_training: the Simic policy training set — one transition per adaptation command.

Each admitted ``esper.AdaptationCommand`` opens a transition; its
``esper.FieldReport`` (matched by ``command_id``) completes it. Everything a
transition holds is a function of the log up to its report's position, so a
completed transition never changes again, and the training set as of any
position ``p`` is exactly the completed transitions whose report is at or
before ``p`` (which is what the export relies on). Definitions:

**State at decision time** (``obs``): for the command's run (envelope
``run_id``; none is the unnamed run ``""``), as of the position just before
the command — the latest ``SystemStateReported`` metrics, the lifecycle state
of the target slot (stage one-hot and alpha; a slot no lifecycle event has
touched is ``DORMANT`` with alpha 0), how many of the run's slots are in each
stage, and the health status and priority of the run's latest
``TelemetryPacket``. Absent parts are zeros, flagged by ``metrics.present``
(and ``metrics.throughput_present``); see :data:`FEATURE_NAMES`.

**Next state** (``next_obs``): the same features of the same run and slot
at the end of the command's window — just before the first of its field
report, an ``EpisodeEnded`` of the run or a ``run.RunAbandoned`` of the run.
Usually that is the state the report judged; for a cut window it is the
state the transition was cut at, which is what bootstrapping needs. When no
``SystemStateReported`` arrived in the window, the metrics part equals the
decision-time one; ``next_state_position`` says which report it came from.

**Reward**: :func:`reward` — ``accuracy_delta - 0.5 * loss_delta`` of the
report's ``FieldReportDelta`` (accuracy up and loss down are both good; the
raw deltas are kept beside it to recompute other rewards).

**terminated** (no bootstrapping from the next state): an ``EpisodeEnded``
with ``truncated=False`` in the run between the command and its report.
Pruning or fossilizing a seed does *not* terminate: the policy keeps acting
on the same host (other slots, a new seed in the same slot), and the seed's
stage is part of the next state.

**truncated** (bootstrap from the next state): an ``EpisodeEnded`` with
``truncated=True``, a ``run.RunAbandoned`` of the run between the command and
its report, or a report whose outcome is ``ABORTED`` (the observation window
was cut). Both flags can be true; ``done = terminated or truncated``.
``done_position`` is the first event that set either.

**Pending**: a command without a report yet (or ever, in an abandoned run)
stays ``pending`` and is not exported; the export's manifest counts them. A
report for an unknown or already reported command is ignored; a report
completes the earliest pending command with its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import msgspec
import sqlalchemy as sa

from labledger.events import Event
from labledger.events.esper import (
    AdaptationCommand,
    AlphaCurve,
    AlphaSpeed,
    BlendStyle,
    EpisodeEnded,
    FieldOutcome,
    FieldReport,
    FieldReportDelta,
    LifecycleOp,
    SeedStage,
    SystemStateReported,
    Tempo,
)
from labledger.events.runs import RunAbandoned
from labledger.events.telemetry import HealthStatus, TelemetryPacket, TelemetryPriority
from labledger.events.typed import Typed
from labledger.projections.base import Projection, RowLike, TableSet, Tx
from labledger.projections.seeds import (
    SEED_EVENTS,
    SeedEvent,
    add_slots_table,
    apply_seed_event,
    run_key,
)

REWARD_LOSS_WEIGHT = 0.5
REWARD_FORMULA = f"accuracy_delta - {REWARD_LOSS_WEIGHT} * loss_delta"

_METRICS = (
    "present",
    "epoch",
    "step",
    "loss",
    "accuracy",
    "grad_norm",
    "learning_rate",
    "throughput_samples_per_s",
    "throughput_present",
)
FEATURE_NAMES: tuple[str, ...] = (
    *(f"metrics.{name}" for name in _METRICS),
    *(f"slot.stage.{stage.value}" for stage in SeedStage),
    "slot.alpha",
    *(f"slots.count.{stage.value}" for stage in SeedStage),
    *(f"health.{status.value}" for status in HealthStatus),
    *(f"priority.{priority.value}" for priority in TelemetryPriority),
)
"""The observation layout, in order (``observation[:, i]`` is ``FEATURE_NAMES[i]``)."""

NONE = "<none>"
ENUM_HEADS: dict[str, tuple[str, ...]] = {
    "op": tuple(op.value for op in LifecycleOp),
    "style": (NONE, *(s.value for s in BlendStyle)),
    "tempo": (NONE, *(t.value for t in Tempo)),
    "alpha_speed": (NONE, *(s.value for s in AlphaSpeed)),
    "alpha_curve": (NONE, *(c.value for c in AlphaCurve)),
}
"""Categorical heads with a fixed vocabulary; index 0 of optional heads means unset."""

SOURCE_POSITIONS = (
    "command",
    "state",
    "health",
    "report",
    "next_state",
    "next_health",
    "done",
)
"""Columns of ``source_positions`` (0: no such event)."""

_encode = msgspec.json.Encoder().encode
_decode_floats = msgspec.json.Decoder(list[float]).decode


def reward(delta: FieldReportDelta) -> float:
    """The reward of a field report: ``accuracy_delta - 0.5 * loss_delta``."""
    return delta.accuracy_delta - REWARD_LOSS_WEIGHT * delta.loss_delta


def observation(run: RowLike | None, slots: Sequence[sa.Row[Any]], slot: str) -> list[float]:
    """The feature vector (:data:`FEATURE_NAMES`) of ``slot`` given a run row and its slots."""
    metrics = [0.0] * len(_METRICS)
    if run is not None and run.state_position is not None:
        throughput = run.throughput_samples_per_s
        metrics = [
            1.0,
            float(run.epoch),
            float(run.step),
            run.loss,
            run.accuracy,
            run.grad_norm,
            run.learning_rate,
            0.0 if throughput is None else throughput,
            0.0 if throughput is None else 1.0,
        ]
    target = next((s for s in slots if s.slot == slot), None)
    stage = SeedStage.DORMANT.value if target is None else target.stage
    counts = {s.value: 0.0 for s in SeedStage}
    for s in slots:
        counts[s.stage] += 1.0
    health = run.health if run is not None else None
    priority = run.priority if run is not None else None
    return [
        *metrics,
        *(1.0 if s.value == stage else 0.0 for s in SeedStage),
        0.0 if target is None else target.alpha,
        *counts.values(),
        *(1.0 if h.value == health else 0.0 for h in HealthStatus),
        *(1.0 if p.value == priority else 0.0 for p in TelemetryPriority),
    ]


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One completed transition, as the export reads it."""

    command_position: int
    command_id: str
    run_id: str
    slot: str
    policy_version: str
    heads: dict[str, str]
    """Enum heads by name (:data:`ENUM_HEADS`), values as strings."""
    blueprint: str | None
    alpha_target: float | None
    obs: list[float]
    next_obs: list[float]
    reward: float
    loss_delta: float
    accuracy_delta: float
    terminated: bool
    truncated: bool
    positions: list[int]
    """By :data:`SOURCE_POSITIONS`."""


class EsperTrainingProjection(Projection):
    """One (state, action, reward, next state, terminated, truncated) row per command."""

    name = "esper_training"
    version = 1
    handles: ClassVar[tuple[type[Event], ...]] = (
        AdaptationCommand,
        FieldReport,
        SystemStateReported,
        TelemetryPacket,
        EpisodeEnded,
        RunAbandoned,
        *SEED_EVENTS,
    )
    description = "Simic training set: one transition per adaptation command"

    def define(self, tables: TableSet) -> None:
        add_slots_table(tables)
        tables.add(
            "runs",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("state_position", sa.BigInteger),
            *(sa.Column(n, sa.BigInteger) for n in ("epoch", "step")),
            *(sa.Column(n, sa.Double) for n in ("loss", "accuracy", "grad_norm")),
            *(sa.Column(n, sa.Double) for n in ("learning_rate", "throughput_samples_per_s")),
            sa.Column("health_position", sa.BigInteger),
            sa.Column("health", sa.Text),
            sa.Column("priority", sa.Text),
        )
        positions = ("state", "health", "report", "next_state", "next_health", "done")
        table = tables.add(
            "transitions",
            sa.Column("command_position", sa.BigInteger, primary_key=True),
            *(
                sa.Column(n, sa.Text, nullable=False)
                for n in ("command_id", "run_id", "slot", "policy_version", *ENUM_HEADS, "status")
            ),
            *(sa.Column(n, sa.Text) for n in ("blueprint", "obs", "outcome", "next_obs")),
            *(sa.Column(f"{n}_position", sa.BigInteger) for n in positions),
            *(sa.Column(n, sa.Double) for n in ("alpha_target", "loss_delta", "accuracy_delta")),
            sa.Column("reward", sa.Double),
            *(sa.Column(n, sa.Boolean, nullable=False) for n in ("terminated", "truncated")),
        )
        sa.Index(f"ix_{table.name}_cmd", table.c.command_id, table.c.status)
        sa.Index(f"ix_{table.name}_run", table.c.run_id, table.c.status)

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event, position, run_id = item.event, item.position, run_key(item.record)
        match event:
            case SystemStateReported():
                metrics = msgspec.structs.asdict(event.metrics)  # the runs columns, by name
                tx.upsert("runs", {"run_id": run_id}, state_position=position, **metrics)
            case TelemetryPacket():
                tx.upsert(
                    "runs",
                    {"run_id": run_id},
                    health_position=position,
                    health=event.health.status.value,
                    priority=event.priority.value,
                )
            case AdaptationCommand():
                _open(tx, run_id, event, position)
            case FieldReport():
                _complete(tx, event, position)
            case EpisodeEnded():
                flag = "truncated" if event.truncated else "terminated"
                _end_window(tx, run_id, flag, position)
            case RunAbandoned():
                _end_window(tx, run_id, "truncated", position)
            case _:
                assert isinstance(event, SeedEvent)
                apply_seed_event(tx, run_id, event, position)


def _state(tx: Tx, run_id: str, slot: str) -> dict[str, Any]:
    """The features of ``slot`` now, with the positions of the events they came from."""
    run = tx.get("runs", run_id=run_id)
    table = tx.table("slots")
    slots = list(tx.query(sa.select(table).where(table.c.run_id == run_id)))
    return {
        "obs": _encode(observation(run, slots, slot)).decode(),
        "state_position": None if run is None else run.state_position,
        "health_position": None if run is None else run.health_position,
    }


def _next_state(tx: Tx, run_id: str, slot: str) -> dict[str, Any]:
    return {f"next_{k}": v for k, v in _state(tx, run_id, slot).items()}


def _open(tx: Tx, run_id: str, cmd: AdaptationCommand, position: int) -> None:
    heads = cmd.heads
    tx.insert(
        "transitions",
        command_position=position,
        command_id=cmd.command_id,
        run_id=run_id,
        slot=cmd.target_slot,
        policy_version=cmd.metadata.policy_version,
        op=cmd.operation.value,
        style=heads.style.value if heads.style else NONE,
        tempo=heads.tempo.value if heads.tempo else NONE,
        alpha_speed=heads.alpha_speed.value if heads.alpha_speed else NONE,
        alpha_curve=heads.alpha_curve.value if heads.alpha_curve else NONE,
        blueprint=heads.blueprint,
        alpha_target=heads.alpha_target,
        **_state(tx, run_id, cmd.target_slot),
        status="pending",
        terminated=False,
        truncated=False,
    )


def _complete(tx: Tx, report: FieldReport, position: int) -> None:
    table = tx.table("transitions")
    row = tx.query(
        sa.select(table)
        .where(table.c.command_id == report.command_id, table.c.status == "pending")
        .order_by(table.c.command_position)
        .limit(1)
    ).first()
    if row is None:
        return  # unknown command, or already reported: the first report counts
    aborted = report.outcome is FieldOutcome.ABORTED
    changes: dict[str, Any] = {
        "status": "complete",
        "report_position": position,
        "outcome": report.outcome.value,
        "loss_delta": report.delta.loss_delta,
        "accuracy_delta": report.delta.accuracy_delta,
        "reward": reward(report.delta),
        "truncated": row.truncated or aborted,
    }
    if row.done_position is None:  # else the next state was frozen when the window ended
        changes |= _next_state(tx, row.run_id, row.slot)
        changes["done_position"] = position if aborted else None
    tx.update("transitions", {"command_position": row.command_position}, **changes)


def _end_window(tx: Tx, run_id: str, flag: str, position: int) -> None:
    """Set ``flag`` on every open transition of the run; the first end freezes its next state.

    The window of a command ends at the first of its report, the end of its
    episode or the abandonment of its run: the next state is taken there, so
    a truncated transition bootstraps from the state it was cut at, not from
    a state of the following episode.
    """
    table = tx.table("transitions")
    open_ = (table.c.run_id == run_id, table.c.status == "pending")
    fresh = tx.query(
        sa.select(table.c.command_position, table.c.slot)
        .where(*open_, table.c.done_position.is_(None))
        .order_by(table.c.command_position)
    ).all()
    for command_position, slot in fresh:
        tx.update(
            "transitions",
            {"command_position": command_position},
            done_position=position,
            **_next_state(tx, run_id, slot),
        )
    tx.conn.execute(sa.update(table).where(*open_).values({flag: True}))


def completed(tx: Tx, as_of: int | None = None) -> list[Transition]:
    """Completed transitions (report at or before ``as_of``), in command-position order."""
    table = tx.table("transitions")
    query = sa.select(table).where(table.c.status == "complete")
    if as_of is not None:
        query = query.where(table.c.report_position <= as_of)
    rows = tx.query(query.order_by(table.c.command_position))
    return [_transition(row) for row in rows]


def pending_count(tx: Tx, as_of: int | None = None) -> int:
    """Commands (at or before ``as_of``) without a report (at or before ``as_of``)."""
    table = tx.table("transitions")
    unreported = table.c.status == "pending"
    query = sa.select(sa.func.count()).select_from(table)
    if as_of is not None:
        unreported = sa.or_(unreported, table.c.report_position > as_of)
        query = query.where(table.c.command_position <= as_of)
    return int(tx.query(query.where(unreported)).scalar_one())


def _transition(row: sa.Row[Any]) -> Transition:
    positions = [
        row.command_position,
        row.state_position,
        row.health_position,
        row.report_position,
        row.next_state_position,
        row.next_health_position,
        row.done_position,
    ]
    return Transition(
        command_position=row.command_position,
        command_id=row.command_id,
        run_id=row.run_id,
        slot=row.slot,
        policy_version=row.policy_version,
        heads={head: getattr(row, head) for head in ENUM_HEADS},
        blueprint=row.blueprint,
        alpha_target=row.alpha_target,
        obs=_decode_floats(row.obs),
        next_obs=_decode_floats(row.next_obs),
        reward=row.reward,
        loss_delta=row.loss_delta,
        accuracy_delta=row.accuracy_delta,
        terminated=bool(row.terminated),
        truncated=bool(row.truncated),
        positions=[p or 0 for p in positions],
    )
