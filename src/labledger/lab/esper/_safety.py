"""Safety in the loop (issue #16, seed ``004_…``): conservative mode and the emergency halt.

Private to ``session``. Kasmina goes **conservative** — it refuses growth
(``GERMINATE``) for :data:`CONSERVATIVE_EPOCHS` epochs, and records why in an
``esper.ConservativeModeEntered`` — when any of these holds for a command it
is about to carry out:

- its ``DecisionMetadata.risk`` is above the session's ``risk_threshold``
  (a decision with risk 0.999999 used to be executed);
- Tamiyo took longer than its ``decision_budget_s`` to decide (a timeout);
- the run's latest telemetry is CRITICAL (a rollback just happened).

Each refused command gets an ``esper.GrowthRefused`` and a field report with
deltas 0 (nothing changed). Pruning, fossilizing and waiting stay allowed:
they shrink or freeze the model. The **emergency halt**: after
``halt_after_rollbacks`` (default 2) divergence rollbacks in a row the session stops
training, appends ``esper.EmergencyHalt``, and ends its episode truncated.

The timeout is the one wall-clock reading here; it can only refuse growth,
and with the default budget (seconds, for a decision that takes
microseconds) it never fires in a reproducible run.
"""

from __future__ import annotations

from labledger.events import Event
from labledger.events.esper import (
    AdaptationCommand,
    ConservativeModeEntered,
    EmergencyHalt,
    GrowthRefused,
    LifecycleOp,
    SafetyTrigger,
)
from labledger.events.telemetry import TelemetryPriority
from labledger.lab.esper._run import Run

CONSERVATIVE_EPOCHS = 2


def trigger(run: Run, cmd: AdaptationCommand) -> tuple[SafetyTrigger, str] | None:
    """What puts Kasmina into conservative mode at this command, or None."""
    cfg = run.config
    if cmd.metadata.risk > cfg.risk_threshold:
        return SafetyTrigger.RISK, f"risk {cmd.metadata.risk:.6f} > threshold {cfg.risk_threshold}"
    if run.state.slow_decision_s is not None:
        took, run.state.slow_decision_s = run.state.slow_decision_s, None
        return SafetyTrigger.TAMIYO_TIMEOUT, f"decision took {took:.3f}s > {cfg.decision_budget_s}s"
    if run.priority is TelemetryPriority.CRITICAL:
        return SafetyTrigger.CRITICAL_HEALTH, "latest telemetry is CRITICAL"
    return None


def screen(
    run: Run, cmd: AdaptationCommand, epoch: int, n: int
) -> tuple[list[tuple[Event, str]], bool]:
    """The safety records of ``cmd`` and whether it is refused (conservative mode, growth)."""
    out: list[tuple[Event, str]] = []
    fired = trigger(run, cmd)
    state = run.state
    if fired is not None:
        what, detail = fired
        state.conservative_until = max(state.conservative_until, epoch + CONSERVATIVE_EPOCHS)
        state.conservative_trigger = what.value
        entered = ConservativeModeEntered(
            trigger=what,
            epoch=epoch,
            until_epoch=state.conservative_until,
            detail=detail,
            command_id=cmd.command_id,
        )
        out.append((entered, f"conservative-{n}"))
    if cmd.operation is not LifecycleOp.GERMINATE or epoch > state.conservative_until:
        return out, False
    refused = GrowthRefused(
        command_id=cmd.command_id,
        slot=cmd.target_slot,
        trigger=SafetyTrigger(state.conservative_trigger or SafetyTrigger.RISK.value),
        epoch=epoch,
        detail=f"conservative mode until epoch {state.conservative_until}",
    )
    return [*out, (refused, f"refused-{n}")], True


def halt(run: Run, epoch: int) -> EmergencyHalt | None:
    """The emergency halt record when rollbacks kept coming (see the module docstring)."""
    if run.state.rollbacks_in_a_row < run.config.halt_after_rollbacks:
        return None
    run.state.halted = True
    return EmergencyHalt(
        epoch=epoch,
        reason=f"{run.state.rollbacks_in_a_row} divergence rollbacks in a row",
        rollbacks_in_a_row=run.state.rollbacks_in_a_row,
    )
