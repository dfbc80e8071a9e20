"""An Esper training session: Tolaria trains, Tamiyo decides, Kasmina acts, all in the log.

Streams: ``esper-<run>`` (everything but commands, exact expected versions)
and ``esper-commands-<run>`` (Tamiyo's signed commands, through the gate).
Per run: ``run.RunStarted`` + one ``esper.KernelRegistered`` per blueprint.
Per epoch ``e``, in order:

1. batch: [``esper.RollbackPerformed``] · Kasmina's lifecycle tick
   (``esper.SeedGateEvaluated`` / ``esper.SeedStageChanged`` / ``esper.SeedPruned``)
   · ``esper.SystemStateReported`` · ``esper.TelemetryPacket`` (kasmina, then
   tolaria) · ``esper.FieldReport`` for every window ending at ``e``;
2. at most one ``esper.AdaptationCommand`` (commands stream);
3. batch: Kasmina's verdicts and effects (``security.CommandAccepted`` or
   ``security.CommandRejected`` + a CRITICAL packet; ``esper.SeedGerminated``,
   ``esper.SeedFossilized``, ``esper.SeedPruned`` …) · ``run.Heartbeat`` whose
   metadata names the checkpoint blob of the end of ``e``.

Then ``esper.EpisodeEnded``, the reports of cut windows, ``run.RunFinished``.

**Resume** (:func:`resume_session`): the checkpoint is the last heartbeat's
blob — host and seed parameters plus the whole session state (slots, pending
reports, cursors, nonces acted on, policy memory). ``run.RunResumed`` names it;
the dead attempt's events after it are superseded, its commands after it are
skipped (left without a report), and the epoch after it is replayed: data
order depends on ``(seed, epoch)`` only and SGD has no state, so the numbers
match an uninterrupted run.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
import torch

from labledger.errors import CommandRefused, UsageError
from labledger.events import Event
from labledger.events.esper import (
    EpisodeEnded,
    FieldReport,
    KernelRegistered,
)
from labledger.events.runs import Heartbeat, RunStarted, Subsystem
from labledger.events.typed import Typed
from labledger.lab.esper import _acting, _epoch, _safety, field_reports, tolaria
from labledger.lab.esper._run import (
    ESPER_RUNS,
    KASMINA,
    TAMIYO,
    TOLARIA,
    Run,
    SessionState,
    Tally,
    commands_stream,
)
from labledger.lab.esper.kasmina import SlotState
from labledger.lab.esper.tamiyo import load_policy, to_command
from labledger.lab.esper.urza import Kernel, KernelCache, register_kernels
from labledger.lab.runs import RunLog
from labledger.security import KeyRing, LabGate, register_key
from labledger.security.keyring import ED25519, ensure_key
from labledger.security.reserved import as_gate
from labledger.store import EventStore

Hook = Callable[[Run, int], None]


@dataclass(frozen=True)
class SessionConfig:
    """What a session does; stored in its ``run.RunStarted.config``."""

    epochs: int = 5
    seed: int = 0
    policy: str = "heuristic"
    lr: float = 0.3
    batch: int = 32
    blueprints: tuple[str, ...] = ("residual_mlp", "low_rank")
    window: int = field_reports.DEFAULT_WINDOW
    prefetch_budget_s: float = 2.0
    prefetch_delay_s: float = 0.0
    """Fault injection: simulated Urza latency."""
    diverge_epoch: int | None = None
    """Fault injection: blow up the host in this epoch (rollback drill)."""
    cache_bytes: int = 4 * 1024 * 1024
    threads: int = 1
    task: str = "digits"
    """``digits`` or ``spirals`` (:data:`labledger.lab.esper.tolaria.TASKS`)."""
    counterfactual: bool = True
    """Judge each decision against a control branch without it (see ``field_reports``)."""
    risk_threshold: float = 0.9
    """A command riskier than this puts Kasmina into conservative mode (no growth)."""
    decision_budget_s: float = 5.0
    """A Tamiyo decision slower than this counts as a timeout (conservative mode)."""
    halt_after_rollbacks: int = 2
    """This many divergence rollbacks in a row halt the run (``esper.EmergencyHalt``)."""


@dataclass
class Summary:
    """What a session did."""

    run_id: str
    attempt: int
    epochs: int
    accuracy: dict[int, float]
    final_accuracy: float
    tally: Tally
    elapsed_s: float


def _determinism(cfg: SessionConfig) -> None:
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(cfg.threads)


def session_ring(store: EventStore, ring: KeyRing | None) -> KeyRing:
    """The ring commands are signed with: ``ring``, else the store gate's ring.

    An empty ring gets a new Ed25519 key, saved to the key file (issue #18: no
    more in-memory session keys), and an Ed25519 key's public half is registered
    in the log before the first command, so the run's signatures can be checked
    after it with no secret. The gate verifies with its own ring, so the key is
    added to that very ring.
    """
    gate = getattr(store, "gate", None)
    target = ring if ring is not None else gate.keyring if isinstance(gate, LabGate) else KeyRing()
    kid = ensure_key(target)
    if target.algorithm(kid) == ED25519:
        register_key(store, target, kid, "esper.session")
    return target


def _make_run(
    log: RunLog,
    cfg: SessionConfig,
    ring: KeyRing | None,
    kernels: dict[str, Kernel],
    progress: Any,
) -> Run:
    _determinism(cfg)
    store = log.store
    policy = load_policy(cfg.policy, store, cfg.blueprints, cfg.seed)
    return Run(
        log=log,
        config=cfg,
        ring=session_ring(store, ring),
        policy=policy,
        host=tolaria.Host(cfg.seed, tolaria.task(cfg.task)),
        data=tolaria.load_data(cfg.seed, task_name=cfg.task),
        cache=KernelCache(store, cfg.cache_bytes),
        kernels=kernels,
        state=SessionState(slots={n: SlotState() for n in tolaria.SLOT_NAMES}),
        progress=progress,
    )


def run_session(
    store: EventStore,
    config: SessionConfig,
    *,
    run_id: str | None = None,
    ring: KeyRing | None = None,
    progress: Callable[[int, int], None] | None = None,
    hook: Hook | None = None,
) -> Summary:
    """Train a new run to its end (see the module docstring).

    Args:
        store: a ledger (its gate verifies the commands).
        config: the session; ``config.policy`` is ``heuristic`` or ``ckpt:SHA``.
        run_id: default ``esper-<date>-<random>``.
        ring: signing keys; default the gate's ring (an empty one gets a saved, registered key).
        progress: called with (epochs done, epochs).
        hook: called after each epoch's state is appended (tests inject commands here).

    Raises:
        UsageError: bad settings or policy spec. WrongExpectedVersion: a second writer.
    """
    if config.epochs < 1 or config.window < 1 or config.batch < 1 or config.lr <= 0:
        raise UsageError("epochs, window and batch must be >= 1 and lr > 0")
    started_s = time.monotonic()
    run_id = run_id or f"{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"
    kernels, registered = register_kernels(
        store, list(config.blueprints), tolaria.task(config.task).hidden, config.seed
    )
    run = _make_run(RunLog(store, ESPER_RUNS, run_id), config, ring, kernels, progress)
    kernel_events = [
        run.new(k, -1, "kernel", i, actor="esper.urza") for i, k in enumerate(registered)
    ]
    run.log.start(_started(config), then=kernel_events, name=run.name(-1, "started"))
    run.remember_good()
    return _drive(run, 0, hook, started_s)


def _started(config: SessionConfig) -> RunStarted:
    from labledger._version import __version__

    return RunStarted(
        subsystem=Subsystem.ESPER,
        config=_config_doc(config),
        code_version=__version__,
        host=socket.gethostname() or "unknown",
        heartbeat_interval_s=30.0,
    )


def resume_session(
    store: EventStore,
    run_id: str,
    *,
    ring: KeyRing | None = None,
    progress: Callable[[int, int], None] | None = None,
    hook: Hook | None = None,
) -> Summary:
    """Continue ``run_id`` as a new attempt from its last checkpoint (module docstring).

    Raises:
        UsageError: no such run, or it already finished.
    """
    started_s = time.monotonic()
    items: list[Typed[Event]] = []
    log = RunLog.load(store, ESPER_RUNS, run_id, apply=items.append)
    if log.started is None:
        raise UsageError(f"no Esper run {run_id!r}: stream {log.stream!r} is empty")
    if log.finished is not None:
        raise UsageError(f"run {run_id!r} already finished")
    cfg = msgspec.convert(log.started.config, SessionConfig, strict=False)
    run = _make_run(log, cfg, ring, _kernels(store, cfg, items), progress)
    checkpoint_position, sha, start = _restore(run, items)
    log.resume(
        checkpoint_id=f"epoch-{start - 1}",
        checkpoint_position=checkpoint_position,
        checkpoint_sha256=sha,
        name=(log.attempt + 1, start - 1, "resumed", 0),
    )
    run.state.attempt, run.state.heartbeat_seq = log.attempt, log.heartbeat_seq
    run.state.commands_cursor = store.stream_version(commands_stream(run_id)) + 1
    return _drive(run, start, hook, started_s)


def _kernels(store: EventStore, cfg: SessionConfig, items: list[Typed[Event]]) -> dict[str, Kernel]:
    """The run's registered kernels, instantiated once to count their parameters."""
    kernels: dict[str, Kernel] = {}
    cache = KernelCache(store, cfg.cache_bytes)
    for i in items:
        if isinstance(i.event, KernelRegistered):
            k = i.event
            params = sum(p.numel() for p in cache.instantiate(k.artifact_sha256).parameters())
            kernels[k.blueprint_id] = Kernel(k.blueprint_id, k.artifact_sha256, 0, params)
    return kernels


def _restore(run: Run, items: list[Typed[Event]]) -> tuple[int, str | None, int]:
    """Restore the last heartbeat's checkpoint: (its position, its blob, the epoch to run next).

    Without a checkpointed heartbeat the run restarts at epoch 0 after its registrations.
    """
    beats = [
        i
        for i in items
        if isinstance(i.event, Heartbeat) and b"checkpoint_sha256" in i.record.metadata
    ]
    if not beats:
        run.remember_good()
        registered = [i for i in items if isinstance(i.event, KernelRegistered | RunStarted)]
        return registered[-1].position, None, 0
    meta = msgspec.json.decode(beats[-1].record.metadata)
    run.restore(run.store.get_blob(meta["checkpoint_sha256"]))
    # A report written after the checkpoint (the kill came between the two) is in
    # the log already: judging its command again would report it twice.
    reported = {
        i.event.command_id
        for i in items
        if isinstance(i.event, FieldReport) and i.position > beats[-1].position
    }
    run.state.pending = [p for p in run.state.pending if p.command_id not in reported]
    return beats[-1].position, meta["checkpoint_sha256"], run.state.epoch_done + 1


def _config_doc(cfg: SessionConfig) -> dict[str, Any]:
    doc = asdict(cfg)
    doc["blueprints"] = list(cfg.blueprints)
    return doc


# -- the loop -------------------------------------------------------------------------


def _drive(run: Run, start: int, hook: Hook | None, started_s: float) -> Summary:
    cfg: SessionConfig = run.config
    for epoch in range(start, cfg.epochs):
        _epoch.run_epoch(run, epoch)
        halted = _safety.halt(run, epoch)
        if halted is not None:
            run.append([run.new(halted, epoch, "halt", actor=TOLARIA)])
            break
        if hook is not None:
            hook(run, epoch)
        _decide(run, epoch)
        acted = _acting.poll(run, epoch)
        sha = run.save_checkpoint()
        meta = msgspec.json.encode({"checkpoint_sha256": sha, "epoch": epoch})
        beat = run.log.heartbeat(
            f"epoch {epoch + 1}/{cfg.epochs}", name=run.name(epoch, "heartbeat"), metadata=meta
        )
        batch = [run.new(e, epoch, kind, actor=KASMINA) for e, kind in acted]
        with as_gate(KASMINA):  # Kasmina's verdicts are security.* records (issue #18)
            run.append([*batch, beat])
        if run.progress is not None:
            run.progress(epoch + 1, cfg.epochs)
    _finish(run, truncated=run.state.halted)
    final = run.state.metrics.accuracy if run.state.metrics else 0.0
    return Summary(
        run.run_id,
        run.log.attempt,
        cfg.epochs,
        dict(run.state.accuracy),
        final,
        run.tally,
        round(time.monotonic() - started_s, 3),
    )


def _decide(run: Run, epoch: int) -> None:
    started = time.perf_counter()
    decision = run.policy.decide(run.live(), list(tolaria.SLOT_NAMES))
    took = time.perf_counter() - started
    if took > run.config.decision_budget_s:  # a Tamiyo timeout: Kasmina goes conservative
        run.state.slow_decision_s = took
    if decision is None:
        return
    command_id = f"{run.run_id}-a{run.log.attempt}-e{epoch}"
    current = run.state.slots.get(decision.slot)
    seed_id = current.seed_id if current is not None and decision.blueprint_id is None else None
    cmd = to_command(decision, command_id, seed_id, run.ring)
    new = run.log.new(cmd, *run.name(epoch, "command"), actor=TAMIYO)
    run.tally.commands += 1
    try:
        run.store.append(commands_stream(run.run_id), [new])
    except CommandRefused:
        run.tally.rejected_by_gate += 1  # recorded by the store; training goes on


def _finish(run: Run, *, truncated: bool = False) -> None:
    m = run.state.metrics
    assert m is not None
    end = m.epoch + 1 if truncated else run.config.epochs
    reports = _epoch.due(run, end, m, all_=True, halted=run.state.halted)
    ended = EpisodeEnded(
        episode=0,
        steps=run.state.steps,
        final_accuracy=m.accuracy,
        episode_reward=run.state.rewards,
        success=m.accuracy >= 0.9,
        truncated=truncated,
    )
    batch = [run.new(ended, end, "episode")]
    batch += [
        run.new(r, end, f"report-{r.command_id}", actor="esper.field_reports") for r in reports
    ]
    detail = f"{end} epochs, accuracy {m.accuracy:.4f}"
    run.log.finish(detail, before=batch, name=run.name(end, "finished"))
