"""A small Esper run built from typed events (the Esper lab is not needed to fill a store)."""

from __future__ import annotations

import datetime as dt

from labledger.events.esper import (
    ActionHeads,
    AdaptationCommand,
    BlendStyle,
    DecisionMetadata,
    FieldOutcome,
    FieldReport,
    FieldReportDelta,
    LifecycleOp,
    SeedGerminated,
    SeedStage,
    SeedStageChanged,
    SystemStateReported,
    TrainingMetrics,
)
from labledger.events.runs import RunFinished, RunOutcome, RunStarted, Subsystem
from labledger.events.security import CommandSecurity
from labledger.security import KeyRing, sign
from labledger.store import EventStore, NewEvent

KEY_ID, SECRET = "k-test", b"api-test-secret-0123456789abcdef"


def ring() -> KeyRing:
    """The test key ring: one key."""
    return KeyRing({KEY_ID: SECRET})


def command(cid: str, slot: str = "s0", key_id: str = KEY_ID) -> AdaptationCommand:
    """An unsigned GERMINATE command (sign it with ``sign``)."""
    return AdaptationCommand(
        command_id=cid,
        target_slot=slot,
        target_seed_id=None,
        blueprint_id="conv_light",
        operation=LifecycleOp.GERMINATE,
        heads=ActionHeads(blueprint="conv_light", style=BlendStyle.GATED, alpha_target=0.75),
        metadata=DecisionMetadata(
            policy_version="tamiyo-v3", risk=0.2, blend=None, coverage=0.9, reason="plateau"
        ),
        security=CommandSecurity(
            signature="",
            nonce="x",
            issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
            freshness_window=dt.timedelta(seconds=60),
            key_id=key_id,
        ),
    )


def _state(epoch: int) -> SystemStateReported:
    metrics = TrainingMetrics(
        epoch=epoch,
        step=epoch * 100,
        loss=1.0 / (epoch + 1),
        accuracy=min(0.95, 0.5 + 0.07 * epoch),
        grad_norm=1.0,
        learning_rate=0.01,
        throughput_samples_per_s=None,
    )
    return SystemStateReported(metrics=metrics, seed_stages={"s0": SeedStage.DORMANT})


def fill_esper(store: EventStore, keyring: KeyRing, run_id: str = "esper-1") -> str:
    """Append an Esper run: states per epoch, one signed command, its seed events and report.

    Returns:
        The command id.
    """
    cid = f"{run_id}-cmd-1"
    stream = f"esper-{run_id}"
    started = RunStarted(subsystem=Subsystem.ESPER, config={}, code_version="t", host="h")
    events: list[NewEvent] = [started.to_new_event(run_id=run_id, actor="tolaria")]
    for epoch in range(6):
        events.append(_state(epoch).to_new_event(run_id=run_id, actor="tolaria"))
        if epoch == 1:
            signed = sign(command(cid), keyring)
            events.append(signed.to_new_event(run_id=run_id, actor="tamiyo"))
        if epoch == 2:
            germ = SeedGerminated(
                slot="s0",
                seed_id="seed-1",
                blueprint_id="conv_light",
                kernel_sha256=None,
                command_id=cid,
                epoch=2,
            )
            events.append(germ.to_new_event(run_id=run_id, actor="kasmina"))
        if epoch == 3:
            change = SeedStageChanged(
                slot="s0",
                seed_id="seed-1",
                from_stage=SeedStage.GERMINATED,
                to_stage=SeedStage.TRAINING,
                alpha=0.1,
                epoch=3,
                command_id=cid,
            )
            events.append(change.to_new_event(run_id=run_id, actor="kasmina"))
        if epoch == 4:
            delta = FieldReportDelta(
                loss_delta=-0.2, accuracy_delta=0.1, latency_ms=2.0, observation_window_epochs=2
            )
            rep = FieldReport(
                command_id=cid, outcome=FieldOutcome.SUCCESS, delta=delta, extra_metrics={}
            )
            events.append(rep.to_new_event(run_id=run_id, actor="tamiyo"))
    events.append(RunFinished(outcome=RunOutcome.SUCCEEDED).to_new_event(run_id=run_id))
    for event in events:  # one event per append: signed commands are checked one by one
        store.append(stream, [event])
    return cid
