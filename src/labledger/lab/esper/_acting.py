"""Kasmina acting on the log: read admitted commands, verify, execute, record; telemetry.

Private to ``session``. Commands are read from the run's commands stream from
a cursor (so each is acted on once, in log order) and verified again by
:func:`labledger.lab.esper.kasmina.verify` — the store's gate already checked
them at append, but a command can reach the log by other paths (a store
opened without the gate, an import), and Kasmina does not trust the path.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from labledger.events import Event
from labledger.events.esper import (
    AdaptationCommand,
    AlphaCurve,
    AlphaSpeed,
    LifecycleOp,
    SeedFossilized,
    SeedGerminated,
    SeedPruned,
    SeedStage,
    Tempo,
)
from labledger.events.security import CommandAccepted, CommandRejected, RejectReason
from labledger.events.telemetry import (
    EventLevel,
    HealthStatus,
    SystemHealth,
    TelemetryEvent,
    TelemetryMetric,
    TelemetryPacket,
    TelemetryPriority,
)
from labledger.events.typed import decode_record
from labledger.lab.esper import _safety, counterfactual, kasmina
from labledger.lab.esper._run import Run, commands_stream, set_mode
from labledger.lab.esper.field_reports import PendingReport
from labledger.lab.esper.kasmina import SPEED_STEPS, TEMPO_EPOCHS, SlotState

Acted = list[tuple[Event, str]]
"""Events with the kind that names their id."""


def packet(
    source: str,
    priority: TelemetryPriority,
    status: HealthStatus,
    metrics: dict[str, float],
    events: list[TelemetryEvent],
) -> TelemetryPacket:
    """A telemetry packet (metrics by name, in the given order)."""
    return TelemetryPacket(
        source=source,
        priority=priority,
        health=SystemHealth(status=status, indicators={}),
        metrics=[TelemetryMetric(name=k, value=v) for k, v in metrics.items()],
        events=events,
    )


def note(description: str, level: EventLevel, **attributes: str) -> TelemetryEvent:
    """One telemetry event."""
    return TelemetryEvent(description=description, level=level, attributes=attributes)


def poll(run: Run, epoch: int) -> Acted:
    """Act on every command appended since the cursor; the records of what happened."""
    out: Acted = []
    records = run.store.read_stream(commands_stream(run.run_id), run.state.commands_cursor)
    for record in records:
        run.state.commands_cursor = record.stream_version + 1
        cmd = decode_record(record).event
        if not isinstance(cmd, AdaptationCommand):
            continue
        slots = set(run.host.slots.keys())
        now = dt.datetime.now(dt.UTC)
        problem = kasmina.verify(
            cmd, run.ring, in_log=True, now=now, nonces_seen=set(run.state.nonces_seen), slots=slots
        )
        if problem is None and record.run_id != run.run_id:
            problem = (RejectReason.MALFORMED, f"command of run {record.run_id!r}")
        digest = hashlib.sha256(record.data).hexdigest()
        n = record.stream_version
        if problem is not None:
            out += _rejected(run, cmd, digest, problem, n)
            continue
        run.state.nonces_seen.append(cmd.security.nonce)
        run.tally.accepted += 1
        accepted = CommandAccepted(
            command_type=cmd.TYPE,
            command_id=cmd.command_id,
            command_digest=digest,
            key_id=cmd.security.key_id,
            nonce=cmd.security.nonce,
        )
        out.append((accepted, f"accepted-{n}"))
        safety, refused = _safety.screen(run, cmd, epoch, n)
        out += safety
        out += execute(run, cmd, epoch, n, refused=refused)
    return out


def _rejected(
    run: Run, cmd: AdaptationCommand, digest: str, problem: tuple[RejectReason, str], n: int
) -> Acted:
    reason, detail = problem
    run.tally.rejected_by_kasmina += 1
    rejected = CommandRejected(
        command_type=cmd.TYPE,
        command_id=cmd.command_id,
        reason=reason,
        command_digest=digest,
        key_id=cmd.security.key_id,
        nonce=cmd.security.nonce,
        detail=detail[:500],
    )
    alert = packet(
        "kasmina",
        TelemetryPriority.CRITICAL,
        HealthStatus.DEGRADED,
        {},
        [
            note(
                "command_rejected",
                EventLevel.CRITICAL,
                reason=reason.value,
                command_id=cmd.command_id,
                detail=detail[:200],
            )
        ],
    )
    return [(rejected, f"rejected-{n}"), (alert, f"rejected-telemetry-{n}")]


def execute(
    run: Run, cmd: AdaptationCommand, epoch: int, n: int, *, refused: bool = False
) -> Acted:
    """Carry out one verified command (unless ``refused``); it always gets a pending report."""
    s = run.state.slots.setdefault(cmd.target_slot, SlotState())
    added, latency, out = 0, 0.0, list[tuple[Event, str]]()
    why_not = "refused: conservative mode" if refused else kasmina.applicable(cmd.operation, s)
    unchanged = why_not is not None or cmd.operation is LifecycleOp.WAIT
    control = None if unchanged or not run.config.counterfactual else _control(run, epoch)
    if refused:
        pass  # the GrowthRefused record says why
    elif why_not is not None:
        out.append(
            (
                packet(
                    "kasmina",
                    TelemetryPriority.LOW,
                    HealthStatus.HEALTHY,
                    {},
                    [
                        note(
                            "command_not_applicable",
                            EventLevel.INFO,
                            command_id=cmd.command_id,
                            detail=why_not,
                        )
                    ],
                ),
                f"noop-{n}",
            )
        )
    else:
        match cmd.operation:
            case LifecycleOp.GERMINATE:
                added, latency, out = _germinate(run, cmd, s, epoch, n)
            case LifecycleOp.FOSSILIZE:
                out = _fossilize(run, cmd, s, epoch)
            case LifecycleOp.PRUNE:
                out = [
                    (
                        prune(
                            run,
                            cmd.target_slot,
                            s,
                            cmd.metadata.reason or "policy",
                            epoch,
                            cmd.command_id,
                        ),
                        "pruned",
                    )
                ]
            case LifecycleOp.SET_ALPHA_TARGET:
                s.alpha_target = cmd.heads.alpha_target or s.alpha_target
            case LifecycleOp.ADVANCE:
                s.epochs_in_stage = s.train_epochs
    assert run.state.metrics is not None
    run.state.pending.append(
        PendingReport(
            command_id=cmd.command_id,
            epoch=epoch,
            due_epoch=epoch + run.config.window,
            baseline=run.state.metrics,
            added_params=added,
            host_params=run.host.host_parameter_count(),
            latency_ms=latency,
            control=None if control is None else control.epochs,
            control_rollbacks=0 if control is None else control.rollbacks,
            unchanged=unchanged and run.config.counterfactual,
        )
    )
    return out


def _control(run: Run, epoch: int) -> counterfactual.Control | None:
    """The control branch over the command's window (see ``counterfactual``); None at the end."""
    cfg = run.config
    epochs = min(cfg.window, cfg.epochs - 1 - epoch)
    if epochs < 1:
        return None
    return counterfactual.control_branch(
        counterfactual.fork_host(run.host, run.state.slots, run.cache),
        run.state.slots,
        run.data,
        seed=cfg.seed,
        lr=cfg.lr,
        batch=cfg.batch,
        first_epoch=epoch + 1,
        epochs=epochs,
        last_good_loss=run.state.last_good_loss,
    )


def _germinate(
    run: Run, cmd: AdaptationCommand, s: SlotState, epoch: int, n: int
) -> tuple[int, float, Acted]:
    blueprint = cmd.blueprint_id or ""
    kernel = run.kernels.get(blueprint)
    if kernel is None:
        alert = note("unknown_blueprint", EventLevel.ERROR, blueprint=blueprint)
        return (
            0,
            0.0,
            [
                (
                    packet("kasmina", TelemetryPriority.HIGH, HealthStatus.DEGRADED, {}, [alert]),
                    f"germinate-failed-{n}",
                )
            ],
        )
    got = kasmina.prefetch(
        lambda: run.cache.instantiate(kernel.sha256),
        run.config.prefetch_budget_s,
        run.config.prefetch_delay_s,
    )
    metrics = {"kasmina.prefetch.latency_ms": round(got.latency_ms, 3)}
    if got.module is None:
        what = "prefetch_timeout" if got.error == "timeout" else "kernel_load_failed"
        alert = note(
            what,
            EventLevel.ERROR,
            blueprint=blueprint,
            kernel=kernel.sha256,
            detail=got.error or "",
            fallback="identity",
        )
        return (
            0,
            got.latency_ms,
            [
                (
                    packet(
                        "kasmina", TelemetryPriority.HIGH, HealthStatus.DEGRADED, metrics, [alert]
                    ),
                    f"germinate-failed-{n}",
                )
            ],
        )
    heads = cmd.heads
    seed_id = cmd.target_seed_id or f"{run.run_id}-seed{run.state.seeds_made}"
    run.state.seeds_made += 1
    run.state.slots[cmd.target_slot] = SlotState(
        stage=SeedStage.GERMINATED,
        seed_id=seed_id,
        blueprint_id=blueprint,
        kernel_sha=kernel.sha256,
        added_params=kernel.params,
        alpha_target=heads.alpha_target if heads.alpha_target is not None else 1.0,
        blend_steps=SPEED_STEPS[heads.alpha_speed or AlphaSpeed.FAST],
        curve=heads.alpha_curve or AlphaCurve.LINEAR,
        train_epochs=TEMPO_EPOCHS[heads.tempo or Tempo.FAST],
        command_id=cmd.command_id,
    )
    torch_slot = run.host.slot(cmd.target_slot)
    torch_slot.attach(got.module)
    germinated = SeedGerminated(
        slot=cmd.target_slot,
        seed_id=seed_id,
        blueprint_id=blueprint,
        kernel_sha256=kernel.sha256,
        command_id=cmd.command_id,
        epoch=epoch,
    )
    s = run.state.slots[cmd.target_slot]
    ready = kasmina.gate(
        cmd.target_slot,
        s,
        "kernel_ready",
        True,
        f"kernel {kernel.sha256[:12]} verified and loaded",
        epoch,
        latency_ms=got.latency_ms,
    )
    training = kasmina.move(cmd.target_slot, s, SeedStage.TRAINING, epoch, cmd.command_id)
    set_mode(torch_slot, s)
    acted: Acted = [(germinated, "germinated"), (ready, "gate-ready"), (training, "training")]
    return kernel.params, got.latency_ms, acted


def _fossilize(run: Run, cmd: AdaptationCommand, s: SlotState, epoch: int) -> Acted:
    slot = run.host.slot(cmd.target_slot)
    ok = not slot.breaker.open
    gate = kasmina.gate(
        cmd.target_slot,
        s,
        "fossilize_ready",
        ok,
        "breaker closed" if ok else slot.breaker.last_error,
        epoch,
        alpha=s.alpha,
    )
    if not ok:
        return [(gate, "gate-fossilize")]
    assert s.seed_id is not None
    s.stage, s.command_id = SeedStage.FOSSILIZED, cmd.command_id
    set_mode(slot, s)
    done = SeedFossilized(
        slot=cmd.target_slot,
        seed_id=s.seed_id,
        final_alpha=s.alpha,
        epoch=epoch,
        command_id=cmd.command_id,
    )
    return [(gate, "gate-fossilize"), (done, "fossilized")]


def prune(
    run: Run, name: str, s: SlotState, reason: str, epoch: int, command_id: str | None = None
) -> SeedPruned:
    """Remove the seed of slot ``name`` (mutating ``s`` and the torch slot)."""
    assert s.seed_id is not None
    event = SeedPruned(
        slot=name,
        seed_id=s.seed_id,
        stage=s.stage,
        reason=reason[:2000],
        epoch=epoch,
        command_id=command_id,
    )
    s.stage, s.alpha, s.command_id = SeedStage.PRUNED, 0.0, command_id
    run.host.slot(name).detach()
    return event
