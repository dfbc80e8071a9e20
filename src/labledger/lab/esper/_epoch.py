"""One epoch of an Esper session: train, evaluate, roll back, tick the lifecycle, report.

Private to ``session`` (see its docstring for the order of the epoch's events).
"""

from __future__ import annotations

import math
import time
from typing import Any

from labledger.events.esper import RollbackPerformed, SystemStateReported, TrainingMetrics
from labledger.events.telemetry import EventLevel, HealthStatus, TelemetryPriority
from labledger.lab.esper import _acting, field_reports, kasmina, tolaria
from labledger.lab.esper._run import KASMINA, TOLARIA, Run, set_mode
from labledger.lab.esper.kasmina import Observed


def run_epoch(run: Run, epoch: int) -> None:
    """Train, evaluate, maybe roll back, tick the lifecycle, report; one batch."""
    cfg = run.config
    for name in tolaria.SLOT_NAMES:
        run.host.slot(name).failures_this_epoch = 0
    stats = tolaria.train_epoch(
        run.host, run.data, epoch=epoch, seed=cfg.seed, lr=cfg.lr, batch=cfg.batch
    )
    if cfg.diverge_epoch == epoch:
        tolaria.inject_divergence(run.host)
    loss, accuracy = tolaria.evaluate(run.host, run.data)
    out: list[tuple[Any, str, str]] = []
    rolled = tolaria.diverged(loss, run.state.last_good_loss)
    run.state.rollbacks_in_a_row = run.state.rollbacks_in_a_row + 1 if rolled else 0
    if rolled:
        t0 = time.perf_counter()
        run.roll_back()
        bad_loss = loss
        loss, accuracy = tolaria.evaluate(run.host, run.data)
        ms = (time.perf_counter() - t0) * 1000
        run.tally.rollbacks += 1
        why = f"validation loss {bad_loss:.4g} diverged (last good {run.state.last_good_loss})"
        rb = RollbackPerformed(
            checkpoint_id=f"epoch-{epoch - 1}",
            epoch=epoch,
            reason=why,
            restore_latency_ms=round(ms, 3),
            deadline_exceeded=ms > 1000,
        )
        out.append((rb, "rollback", TOLARIA))
    else:
        run.state.last_good_loss = loss
        run.remember_good()
    run.state.steps += stats.steps
    metrics = TrainingMetrics(
        epoch=epoch,
        step=run.state.steps,
        loss=loss,
        accuracy=accuracy,
        grad_norm=stats.grad_norm if math.isfinite(stats.grad_norm) else 0.0,
        learning_rate=cfg.lr,
        throughput_samples_per_s=round(stats.samples / max(stats.seconds, 1e-9), 1),
    )
    out += [(e, kind, KASMINA) for e, kind in _tick(run, epoch, stats, loss)]
    run.state.metrics, run.state.accuracy[epoch], run.state.epoch_done = metrics, accuracy, epoch
    stages = {n: s.stage for n, s in sorted(run.state.slots.items())}
    out.append((SystemStateReported(metrics=metrics, seed_stages=stages), "state", TOLARIA))
    out.append((_kasmina_packet(run), "telemetry-kasmina", KASMINA))
    out.append((_tolaria_packet(run, metrics, stats, rolled), "telemetry-tolaria", TOLARIA))
    out += [(r, f"report-{r.command_id}", "esper.field_reports") for r in due(run, epoch, metrics)]
    run.append([run.new(e, epoch, kind, actor=actor) for e, kind, actor in out])


def _tick(
    run: Run, epoch: int, stats: tolaria.EpochStats, val_loss: float
) -> list[tuple[Any, str]]:
    broken = {
        n: run.host.slot(n).breaker.last_error
        for n in tolaria.SLOT_NAMES
        if run.host.slot(n).breaker.open
    }
    seen = Observed(epoch, stats.train_loss, val_loss, stats.probe_loss, broken)
    out: list[tuple[Any, str]] = []
    for name, s in sorted(run.state.slots.items()):
        changes, prune_reason = kasmina.tick(name, s, seen)
        out += [(c, f"tick-{name}-{i}") for i, c in enumerate(changes)]
        if prune_reason is not None:
            out.append((_acting.prune(run, name, s, prune_reason, epoch), f"prune-{name}"))
        set_mode(run.host.slot(name), s)
    return out


def _kasmina_packet(run: Run) -> Any:
    failures = {n: run.host.slot(n).failures_this_epoch for n in tolaria.SLOT_NAMES}
    run.tally.kernel_failures += sum(failures.values())
    metrics = {f"kasmina.slot.{n}.alpha": s.alpha for n, s in sorted(run.state.slots.items())}
    metrics |= {f"kasmina.slot.{n}.kernel_failures": float(f) for n, f in failures.items()}
    metrics |= {
        "kasmina.cache.hits": float(run.cache.hits),
        "kasmina.cache.misses": float(run.cache.misses),
        "kasmina.cache.evictions": float(run.cache.evictions),
        "kasmina.cache.bytes": float(run.cache.size),
    }
    events = [
        _acting.note(
            "kernel_failure",
            EventLevel.ERROR,
            slot=n,
            failures=str(f),
            error=run.host.slot(n).breaker.last_error,
            fallback="identity",
            breaker="open" if run.host.slot(n).breaker.open else "closed",
        )
        for n, f in failures.items()
        if f
    ]
    priority = TelemetryPriority.HIGH if events else TelemetryPriority.LOW
    status = HealthStatus.DEGRADED if events else HealthStatus.HEALTHY
    return _acting.packet("kasmina", priority, status, metrics, events)


def _tolaria_packet(run: Run, m: TrainingMetrics, stats: tolaria.EpochStats, rolled: bool) -> Any:
    metrics = {
        "tolaria.training.loss": m.loss,
        "tolaria.training.accuracy": m.accuracy,
        "tolaria.training.train_loss": stats.train_loss if math.isfinite(stats.train_loss) else 0.0,
        "tolaria.training.grad_norm": m.grad_norm,
        "tolaria.training.latency_ms": round(stats.seconds * 1000, 3),
    }
    if rolled:
        events = [_acting.note("rollback", EventLevel.CRITICAL, epoch=str(m.epoch))]
        run.priority, run.health = TelemetryPriority.CRITICAL, HealthStatus.UNHEALTHY
    else:
        events, run.priority, run.health = [], TelemetryPriority.NORMAL, HealthStatus.HEALTHY
    return _acting.packet("tolaria", run.priority, run.health, metrics, events)


def due(
    run: Run, epoch: int, now: TrainingMetrics, *, all_: bool = False, halted: bool = False
) -> list[Any]:
    due = [p for p in run.state.pending if all_ or p.due_epoch <= epoch]
    run.state.pending = [p for p in run.state.pending if p not in due]
    reports = [field_reports.report(p, now, halted=halted) for p in due]
    run.tally.reports += len(reports)
    run.state.rewards += sum(r.extra_metrics["reward"] for r in reports)
    return reports
