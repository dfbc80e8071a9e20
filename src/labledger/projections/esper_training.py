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

**Reward**: :func:`reward` — the one reward definition (:data:`REWARD_VERSION`),
shared by the field reports that write it, this training set, ``audit`` and
``esper evaluate``: ``accuracy_delta - param_rent`` of the report (the rent
charges a seed for the parameters it adds). Version 3 dropped v2's
``- 0.5 * loss_delta``: a report judged at the episode's end (``--window
end``) then gives a decision exactly its share of the evaluation metric
(final accuracy minus the rent), where the loss term had credited a wide seed
for lower loss the metric never sees (issue #16, round 4). The rent is read from the report's
``extra_metrics["param_rent"]``; a report written before the rent existed has
none and pays 0. The raw deltas are kept beside it to recompute other rewards.
Since field reports are counterfactual (issue #16), the deltas are those of the
adapted host *minus* a control branch without the adaptation.

**Observation**: no wall-clock value (the throughput of an epoch is measured
and reported, but it never enters a policy's input: issue #16). ``slots.count.*``
counts every slot of the run from its start — a slot no lifecycle event has
touched counts as ``DORMANT`` — using the slot names of the run's latest
``SystemStateReported``.

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

REWARD_LOSS_WEIGHT = 0.0
"""0.5 up to v2; 0 since v3 (module docstring)."""
RENT = 0.01
"""A seed as large as the host pays 0.01 of reward (one point of accuracy). It was 0.02
in the field reports before v2: on the narrow spirals host (81 parameters) that made
every seed cost more than it could earn in an episode (issue #16); reports keep the
rent they were written with in ``extra_metrics["param_rent"]``."""
REWARD_VERSION = 4
"""v4: the formula of v3, judged against a control branch that replays the divergence
rollbacks of the treatment (``lab/esper/counterfactual.py``); v3's control kept a
diverged loss as measured."""
REWARD_FORMULA = "accuracy_delta - param_rent"

_METRICS = (
    "present",
    "epoch",
    "step",
    "loss",
    "accuracy",
    "grad_norm",
    "learning_rate",
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
_decode_slots = msgspec.json.Decoder(dict[str, tuple[str, float]]).decode


def param_rent(added_params: int, host_params: int) -> float:
    """The rent of ``added_params`` on a host of ``host_params``: ``RENT · added / host``."""
    return RENT * added_params / max(1, host_params)


def reward_value(accuracy_delta: float, loss_delta: float, rent: float) -> float:
    """The reward rule itself (see the module docstring)."""
    return accuracy_delta - REWARD_LOSS_WEIGHT * loss_delta - rent


def reward(report: FieldReport) -> float:
    """The reward of a field report (:data:`REWARD_VERSION`; module docstring)."""
    rent = report.extra_metrics.get("param_rent", 0.0)
    return reward_value(report.delta.accuracy_delta, report.delta.loss_delta, rent)


def _slot_names(run: RowLike | None) -> list[str]:
    names = None if run is None else getattr(run, "slot_names", None)
    return [] if not names else list(msgspec.json.decode(names, type=list[str]))


def slot_states(run: RowLike | None, slots: Sequence[RowLike]) -> dict[str, tuple[str, float]]:
    """Every slot of the run (from its start) → (stage, alpha); untouched slots are DORMANT."""
    out = {name: (SeedStage.DORMANT.value, 0.0) for name in _slot_names(run)}
    out |= {s.slot: (s.stage, s.alpha) for s in slots}
    return dict(sorted(out.items()))


def observation(run: RowLike | None, slots: Sequence[RowLike], slot: str) -> list[float]:
    """The feature vector (:data:`FEATURE_NAMES`) of ``slot`` given a run row and its slots."""
    metrics = [0.0] * len(_METRICS)
    if run is not None and run.state_position is not None:
        metrics = [
            1.0,
            float(run.epoch),
            float(run.step),
            run.loss,
            run.accuracy,
            run.grad_norm,
            run.learning_rate,
        ]
    target = next((s for s in slots if s.slot == slot), None)
    stage = SeedStage.DORMANT.value if target is None else target.stage
    counts = {s.value: 0.0 for s in SeedStage}
    for stage_of, _ in slot_states(run, slots).values():
        counts[stage_of] += 1.0
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
    slots: dict[str, tuple[str, float]]
    """Every slot of the run at decision time → (stage, alpha) (the graph policy's input)."""
    next_slots: dict[str, tuple[str, float]]
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
    version = 3  # 3: reward v3 (no loss term)
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
            sa.Column("slot_names", sa.Text),
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
            *(sa.Column(n, sa.Text) for n in ("slots", "next_slots")),
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
                names = _encode(sorted(event.seed_stages)).decode()
                tx.upsert(
                    "runs", {"run_id": run_id}, state_position=position, slot_names=names, **metrics
                )
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


def _pending(tx: Tx, **equal: str) -> list[RowLike]:
    """The pending transitions with ``equal`` (a command id or a run), in command order.

    ``Tx.find`` serves them from memory during a rebuild (issue #19).
    """
    rows = [row for row in tx.find("transitions", **equal) if row.status == "pending"]
    return sorted(rows, key=lambda row: row.command_position)


def _state(tx: Tx, run_id: str, slot: str) -> dict[str, Any]:
    """The features of ``slot`` now, with the positions of the events they came from."""
    run = tx.get("runs", run_id=run_id)
    slots = tx.find("slots", run_id=run_id)
    return {
        "obs": _encode(observation(run, slots, slot)).decode(),
        "slots": _encode(slot_states(run, slots)).decode(),
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
    earliest = _pending(tx, command_id=report.command_id)[:1]
    if not earliest:
        return  # unknown command, or already reported: the first report counts
    row = earliest[0]
    aborted = report.outcome is FieldOutcome.ABORTED
    changes: dict[str, Any] = {
        "status": "complete",
        "report_position": position,
        "outcome": report.outcome.value,
        "loss_delta": report.delta.loss_delta,
        "accuracy_delta": report.delta.accuracy_delta,
        "reward": reward(report),
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
    # Each open transition is updated through the unit of work (one UPDATE WHERE per
    # window end was a statement, and it dropped the mapped transitions; issue #19).
    for row in _pending(tx, run_id=run_id):
        changes: dict[str, Any] = {flag: True}
        if row.done_position is None:
            changes |= {"done_position": position, **_next_state(tx, run_id, row.slot)}
        tx.update("transitions", {"command_position": row.command_position}, **changes)


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
        slots=_decode_slots(row.slots or "{}"),
        next_slots=_decode_slots(row.next_slots or "{}"),
        reward=row.reward,
        loss_delta=row.loss_delta,
        accuracy_delta=row.accuracy_delta,
        terminated=bool(row.terminated),
        truncated=bool(row.truncated),
        positions=[p or 0 for p in positions],
    )
