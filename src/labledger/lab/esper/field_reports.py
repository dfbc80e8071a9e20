"""Field reports: the measured outcome of each command after its observation window.

A command decided after epoch ``e`` is judged after epoch ``e + window``.
**Counterfactual** (the default, issue #16): the deltas are the metrics then
minus those of a control branch at the same epoch — the same host forked just
before the command, trained over the same epochs without it
(:mod:`labledger.lab.esper.counterfactual`); a command that changes nothing is
its own control (deltas 0). Without a control (``counterfactual=False``) the
deltas are the metrics then minus those the decision saw, as before.
A run that ends first cuts the window: the report covers
the epochs that did happen, or is ``ABORTED`` when none did.

**The reward rule** (written down here, tested in ``tests/lab``)::

    reward     = accuracy_delta − param_rent             (v3, v4; v2 also had − 0.5 · loss_delta)
    param_rent = RENT · added_params / host_params        (RENT = 0.01)

This is the one reward definition, :func:`labledger.projections.esper_training.reward`
(version ``REWARD_VERSION``), which the training set, ``audit`` and ``esper
evaluate`` read back from the report; the rent charges a seed for the
parameters it adds (a seed as large as the host pays 0.01, i.e. one point
of accuracy). The report carries ``added_params``, ``host_params``,
``param_rent`` and ``reward`` in ``extra_metrics`` so a consumer can apply
the rent without this module. v4 changed the control, not the formula: it
replays the treatment's divergence rollbacks (``control_rollbacks`` counts them),
and a run stopped by an emergency halt is judged against the control at the end
of the window, since the halted run's metrics stay where they stopped.

Outcome: ``SUCCESS`` when the reward is above +``NEUTRAL_BAND``,
``REGRESSION`` below −``NEUTRAL_BAND``, else ``NEUTRAL``.
"""

from __future__ import annotations

import msgspec

from labledger.events.esper import (
    FieldOutcome,
    FieldReport,
    FieldReportDelta,
    TrainingMetrics,
)
from labledger.projections.esper_training import REWARD_VERSION, param_rent, reward_value

NEUTRAL_BAND = 0.002
DEFAULT_WINDOW = 2


class PendingReport(msgspec.Struct, kw_only=True):
    """A command waiting for the end of its window."""

    command_id: str
    epoch: int
    """The epoch whose state the decision saw."""
    due_epoch: int
    baseline: TrainingMetrics
    added_params: int
    host_params: int
    latency_ms: float
    control: dict[int, tuple[float, float]] | None = None
    """(loss, accuracy) of the control branch per epoch of the window."""
    control_rollbacks: int = 0
    """Divergence rollbacks the control branch performed (see ``counterfactual``)."""
    unchanged: bool = False
    """The command changed nothing: the treatment is its own control."""


def reward(accuracy_delta: float, loss_delta: float, added_params: int, host_params: int) -> float:
    """The field report's reward (see the module docstring)."""
    return reward_value(accuracy_delta, loss_delta, param_rent(added_params, host_params))


def outcome(value: float) -> FieldOutcome:
    """The verdict for a reward."""
    if value > NEUTRAL_BAND:
        return FieldOutcome.SUCCESS
    if value < -NEUTRAL_BAND:
        return FieldOutcome.REGRESSION
    return FieldOutcome.NEUTRAL


def report(pending: PendingReport, now: TrainingMetrics, *, halted: bool = False) -> FieldReport:
    """The report of ``pending`` judged on the metrics ``now`` (a cut window: fewer epochs).

    ``halted``: the run stopped on an emergency halt at ``now``, so its metrics stay
    ``now``'s to the end of the window, and the control is read there (v4): a halt
    costs the decision what the control went on to learn.
    """
    epochs = now.epoch - pending.epoch
    if epochs < 1:
        return _aborted(pending)
    judged_at = max(now.epoch, pending.due_epoch) if halted else now.epoch
    base_loss, base_accuracy = _baseline(pending, now, judged_at)
    accuracy_delta = max(-1.0, min(1.0, now.accuracy - base_accuracy))
    loss_delta = now.loss - base_loss
    value = reward(accuracy_delta, loss_delta, pending.added_params, pending.host_params)
    return FieldReport(
        command_id=pending.command_id,
        outcome=outcome(value),
        delta=FieldReportDelta(
            loss_delta=loss_delta,
            accuracy_delta=accuracy_delta,
            latency_ms=round(pending.latency_ms, 3),
            observation_window_epochs=epochs,
        ),
        extra_metrics=_extra(pending, value) | _control_metrics(pending, base_loss, base_accuracy),
    )


def _baseline(pending: PendingReport, now: TrainingMetrics, at: int) -> tuple[float, float]:
    """(loss, accuracy) the command is judged against at epoch ``at``."""
    if pending.unchanged:
        return now.loss, now.accuracy
    if pending.control:
        epoch = max((e for e in pending.control if e <= at), default=min(pending.control))
        return pending.control[epoch]
    return pending.baseline.loss, pending.baseline.accuracy


def _control_metrics(pending: PendingReport, loss: float, accuracy: float) -> dict[str, float]:
    if not (pending.unchanged or pending.control):
        return {"counterfactual": 0.0}
    return {
        "counterfactual": 1.0,
        "control_loss": loss,
        "control_accuracy": accuracy,
        "control_rollbacks": float(pending.control_rollbacks),
    }


def _aborted(pending: PendingReport) -> FieldReport:
    return FieldReport(
        command_id=pending.command_id,
        outcome=FieldOutcome.ABORTED,
        delta=FieldReportDelta(
            loss_delta=0.0,
            accuracy_delta=0.0,
            latency_ms=round(pending.latency_ms, 3),
            observation_window_epochs=1,
        ),
        extra_metrics=_extra(pending, 0.0) | {"observed_epochs": 0.0},
    )


def _extra(pending: PendingReport, value: float) -> dict[str, float]:
    return {
        "added_params": float(pending.added_params),
        "host_params": float(pending.host_params),
        "param_rent": param_rent(pending.added_params, pending.host_params),
        "reward": value,
        "reward_version": float(REWARD_VERSION),
        "decision_epoch": float(pending.epoch),
    }
