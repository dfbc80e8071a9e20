"""Kasmina: seed lifecycle, gates, command verification and kernel prefetch.

Lifecycle per slot (decided here as plain functions over :class:`SlotState`;
the session applies them to the torch slots and appends the events)::

    DORMANT ─GERMINATE→ GERMINATED ─gate kernel_ready (at once)→ TRAINING
      ─(tempo epochs) gate seed_trained→ BLENDING (alpha schedule, one step an epoch)
      ─alpha at target, gate blend_stable→ HOLDING ─FOSSILIZE, gate fossilize_ready→ FOSSILIZED
    any live stage ─PRUNE, a failed gate, or an open circuit breaker→ PRUNED

Tempo: FAST 1, STANDARD 2, SLOW 3 epochs of isolated training. Alpha speed:
INSTANT 1, FAST 2, MEDIUM 3, SLOW 4 blending steps; the curve (linear,
cosine, sigmoid) shapes them.

Verification (:func:`verify`): Kasmina acts only on a command it read from the
log (so the store's gate admitted it), whose HMAC holds for a key of the ring,
that is fresh now (``|now − issued_at| ≤ freshness_window``) and whose nonce
it has not acted on before. Anything else is refused and recorded.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread
import msgspec
from torch import nn

from labledger.events.esper import (
    AdaptationCommand,
    AlphaCurve,
    AlphaSpeed,
    LifecycleOp,
    SeedGateEvaluated,
    SeedStage,
    SeedStageChanged,
    Tempo,
)
from labledger.events.security import RejectReason
from labledger.security import KeyRing, check_signature

TEMPO_EPOCHS = {Tempo.FAST: 1, Tempo.STANDARD: 2, Tempo.SLOW: 3}
SPEED_STEPS = {AlphaSpeed.INSTANT: 1, AlphaSpeed.FAST: 2, AlphaSpeed.MEDIUM: 3, AlphaSpeed.SLOW: 4}
LIVE = (SeedStage.GERMINATED, SeedStage.TRAINING, SeedStage.BLENDING, SeedStage.HOLDING)
SEED_TRAINED_RATIO = 1.25
"""Gate seed_trained: the isolated pass's loss at most this × the host's training loss."""
BLEND_STABLE_RATIO = 1.10
"""Gate blend_stable: validation loss at most this × (the loss before blending) + 0.01."""


class SlotState(msgspec.Struct, kw_only=True):
    """What Kasmina knows of one slot (also the slot part of a session checkpoint)."""

    stage: SeedStage = SeedStage.DORMANT
    seed_id: str | None = None
    blueprint_id: str | None = None
    kernel_sha: str | None = None
    added_params: int = 0
    alpha: float = 0.0
    alpha_target: float = 1.0
    blend_steps: int = 2
    blend_step: int = 0
    curve: AlphaCurve = AlphaCurve.LINEAR
    train_epochs: int = 1
    epochs_in_stage: int = 0
    command_id: str | None = None
    pre_blend_loss: float | None = None


@dataclass(frozen=True)
class Observed:
    """What one epoch measured that the gates read (per slot where noted)."""

    epoch: int
    train_loss: float
    val_loss: float
    probe_loss: dict[str, float]
    breaker_open: dict[str, str]
    """Slot → last error, for slots whose breaker is open."""


Change = SeedStageChanged | SeedGateEvaluated


def alpha_at(step: int, steps: int, target: float, curve: AlphaCurve) -> float:
    """Alpha after ``step`` of ``steps`` blending steps towards ``target`` (0 at step 0)."""
    t = min(1.0, max(0.0, step / max(1, steps)))
    match curve:
        case AlphaCurve.LINEAR:
            shaped = t
        case AlphaCurve.COSINE:
            shaped = 0.5 - 0.5 * math.cos(math.pi * t)
        case AlphaCurve.SIGMOID:
            lo, hi = 1 / (1 + math.exp(6)), 1 / (1 + math.exp(-6))
            shaped = (1 / (1 + math.exp(-12 * (t - 0.5))) - lo) / (hi - lo)
    return round(min(1.0, max(0.0, target * shaped)), 6)


def gate(
    slot: str, s: SlotState, name: str, passed: bool, reason: str, epoch: int, **metrics: float
) -> SeedGateEvaluated:
    """The record of one gate check."""
    assert s.seed_id is not None
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    return SeedGateEvaluated(
        slot=slot,
        seed_id=s.seed_id,
        gate=name,
        stage=s.stage,
        passed=passed,
        reason=reason,
        metrics=finite,
        epoch=epoch,
    )


def move(
    slot: str, s: SlotState, to: SeedStage, epoch: int, command_id: str | None = None
) -> SeedStageChanged:
    """Move ``s`` to ``to`` (mutating it) and return the record of the move."""
    assert s.seed_id is not None
    event = SeedStageChanged(
        slot=slot,
        seed_id=s.seed_id,
        from_stage=s.stage,
        to_stage=to,
        alpha=s.alpha,
        epoch=epoch,
        command_id=command_id,
    )
    s.stage, s.epochs_in_stage = to, 0
    return event


def tick(slot: str, s: SlotState, seen: Observed) -> tuple[list[Change], str | None]:
    """Advance one slot after an epoch (mutating ``s``).

    Returns:
        The gate and stage records, and a prune reason when the seed must go.
    """
    if s.stage not in LIVE:
        return [], None
    s.epochs_in_stage += 1
    if slot in seen.breaker_open:
        return [], f"circuit breaker open: {seen.breaker_open[slot]}"
    match s.stage:
        case SeedStage.GERMINATED:
            ok = s.kernel_sha is not None
            return [
                gate(slot, s, "kernel_ready", ok, "kernel attached", seen.epoch),
                move(slot, s, SeedStage.TRAINING, seen.epoch),
            ], None
        case SeedStage.TRAINING if s.epochs_in_stage >= s.train_epochs:
            return _after_training(slot, s, seen)
        case SeedStage.BLENDING:
            return _blend_step(slot, s, seen)
    return [], None


def _after_training(slot: str, s: SlotState, seen: Observed) -> tuple[list[Change], str | None]:
    probe = seen.probe_loss.get(slot, math.inf)
    limit = SEED_TRAINED_RATIO * seen.train_loss
    ok = math.isfinite(probe) and probe <= limit
    reason = f"isolated loss {probe:.4f} vs limit {limit:.4f}"
    record = gate(
        slot,
        s,
        "seed_trained",
        ok,
        reason,
        seen.epoch,
        probe_loss=probe,
        train_loss=seen.train_loss,
    )
    if not ok:
        return [record], f"gate seed_trained failed: {reason}"
    s.pre_blend_loss, s.blend_step = seen.val_loss, 1
    s.alpha = alpha_at(1, s.blend_steps, s.alpha_target, s.curve)
    return [record, move(slot, s, SeedStage.BLENDING, seen.epoch)], None


def _blend_step(slot: str, s: SlotState, seen: Observed) -> tuple[list[Change], str | None]:
    if s.blend_step < s.blend_steps:
        s.blend_step += 1
        s.alpha = alpha_at(s.blend_step, s.blend_steps, s.alpha_target, s.curve)
        return [], None
    before = s.pre_blend_loss if s.pre_blend_loss is not None else seen.val_loss
    limit = BLEND_STABLE_RATIO * before + 0.01
    ok = seen.val_loss <= limit
    reason = f"validation loss {seen.val_loss:.4f} vs limit {limit:.4f} at alpha {s.alpha}"
    record = gate(
        slot,
        s,
        "blend_stable",
        ok,
        reason,
        seen.epoch,
        val_loss=seen.val_loss,
        pre_blend_loss=before,
    )
    if not ok:
        return [record], f"gate blend_stable failed: {reason}"
    return [record, move(slot, s, SeedStage.HOLDING, seen.epoch)], None


def applicable(op: LifecycleOp, s: SlotState) -> str | None:
    """Why ``op`` cannot apply to a slot in its stage, or None."""
    allowed = {
        LifecycleOp.WAIT: tuple(SeedStage),
        LifecycleOp.GERMINATE: (SeedStage.DORMANT, SeedStage.PRUNED),
        LifecycleOp.SET_ALPHA_TARGET: (SeedStage.BLENDING,),
        LifecycleOp.ADVANCE: (SeedStage.TRAINING,),
        LifecycleOp.FOSSILIZE: (SeedStage.HOLDING,),
        LifecycleOp.PRUNE: LIVE,
    }[op]
    return None if s.stage in allowed else f"{op.value} does not apply in stage {s.stage.value}"


# -- verification -------------------------------------------------------------------


def verify(
    cmd: AdaptationCommand,
    ring: KeyRing,
    *,
    in_log: bool,
    now: dt.datetime,
    nonces_seen: set[str],
    slots: set[str],
) -> tuple[RejectReason, str] | None:
    """Why Kasmina must not act on ``cmd``, or None (see the module docstring)."""
    if not in_log:
        return RejectReason.MALFORMED, "not admitted: the command is not in the log"
    problem = check_signature(cmd, ring)
    if problem is not None:
        return problem
    sec = cmd.security
    age = now - sec.issued_at
    if age > sec.freshness_window:
        return RejectReason.STALE, f"issued {age.total_seconds():.3f}s ago"
    if -age > sec.freshness_window:
        return RejectReason.FUTURE, f"issued {-age.total_seconds():.3f}s in the future"
    if sec.nonce in nonces_seen:
        return RejectReason.REPLAYED_NONCE, f"nonce {sec.nonce!r} was already acted on"
    if cmd.target_slot not in slots:
        return RejectReason.MALFORMED, f"no slot {cmd.target_slot!r} in the host"
    return None


# -- prefetch -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prefetched:
    """The outcome of one kernel prefetch."""

    module: nn.Module | None
    latency_ms: float
    error: str | None
    """``"timeout"`` past the budget, or why loading failed."""


def prefetch(load: Callable[[], nn.Module], budget_s: float, delay_s: float = 0.0) -> Prefetched:
    """Load a kernel in a worker thread (anyio) within ``budget_s`` seconds.

    ``delay_s`` simulates a slow Urza (fault injection). Past the budget the
    worker is abandoned — its result is dropped — and the outcome is a timeout.
    """

    abandoned = threading.Event()

    def work() -> nn.Module | None:
        if delay_s:
            time.sleep(delay_s)
        return None if abandoned.is_set() else load()  # an abandoned worker touches nothing

    async def run() -> Prefetched:
        started = time.perf_counter()
        module: nn.Module | None = None
        error: str | None = None
        with anyio.move_on_after(budget_s) as scope:
            try:
                module = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
            except Exception as exc:  # any load failure is reported, never raised into training
                error = f"{type(exc).__name__}: {exc}"[:300]
        if scope.cancelled_caught:
            abandoned.set()
            error = "timeout"
        return Prefetched(module, (time.perf_counter() - started) * 1000, error)

    result: Prefetched = anyio.run(run)
    return result
