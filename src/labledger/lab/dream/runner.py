"""The D-REAM run loop: measure generations of candidates and write everything to the log.

The whole run is one stream, ``dream-<run_id>``, appended with exact expected
versions, so a second writer of the same run fails with
``WrongExpectedVersion`` instead of interleaving. In order:

``run.RunStarted`` (config, :class:`DreamManifest`) → per trial one batch of
``dream.TrialRecorded`` + any ``dream.SafetyCapExceeded`` (+ a
``run.Heartbeat`` every ``heartbeat_every`` trials) → per generation a
``dream.GenerationCompleted`` → ``run.RunFinished``.

Selection reads each candidate's ``score_v2`` from the ``dream_candidates``
read model (caught up after the generation's last trial; the packs' numbers,
see ``report.candidate_scores``), never from a side file.

Resume (:func:`resume_run`) folds the stream, appends ``run.RunResumed``
whose checkpoint is the stream's last event (each trial is one atomic batch,
so the last event always closes a complete trial and nothing is superseded),
and continues with the first trial not in the log.
"""

from __future__ import annotations

import math
import secrets
import socket
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from labledger.errors import StoreUnavailable, UsageError
from labledger.events import Event
from labledger.events.dream import DreamManifest, GenerationCompleted, Regime, TrialRecorded
from labledger.events.dream import SafetyCapExceeded as CapEvent
from labledger.events.runs import (
    Heartbeat,
    RunFinished,
    RunOutcome,
    RunResumed,
    RunStarted,
    Subsystem,
)
from labledger.events.typed import typed
from labledger.lab.dream import evolve
from labledger.lab.dream import state as st
from labledger.lab.dream.config import (
    CapsFile,
    DomainSpec,
    RegimesFile,
    code_hash,
    load_caps,
    load_regimes,
    script_path,
)
from labledger.lab.dream.measure import Measured, TrialSpec, measure, unavailable
from labledger.lab.dream.report import candidate_scores
from labledger.lab.dream.sensors import HostSensors
from labledger.projections import ProjectionEngine, all_projections
from labledger.store import NO_STREAM, EventStore, NewEvent

_canon = msgspec.json.Encoder(order="sorted").encode
Progress = Callable[[int, int], None]
Notice = Callable[[str], None]


@dataclass(frozen=True)
class RunRequest:
    """A new run: the CLI's ``dream run`` arguments."""

    domain: str
    generations: int = 2
    population: int = 4
    trials: int | None = None
    """Trials per regime; ``None`` takes the policy's (10)."""
    seed: int | None = None
    budget_ms: int | None = None
    regimes_path: Path | None = None
    caps_path: Path | None = None
    run_id: str | None = None


@dataclass
class GenerationResult:
    generation: int
    best_cand_id: str | None
    best_score: float | None
    unsafe: int


@dataclass
class RunSummary:
    """What a (resumed) run did, for the CLI's closing line."""

    run_id: str
    domain: str
    attempt: int
    trials_measured: int
    trials_in_log: int
    generations: list[GenerationResult] = field(default_factory=list)


@dataclass
class _Run:
    store: EventStore
    run_id: str
    config: st.RunConfig
    regimes: RegimesFile
    caps: CapsFile
    sensors: HostSensors
    workdir: Path
    state: st.RunState
    progress: Progress
    notice: Notice
    measured: int = 0

    @property
    def stream(self) -> str:
        return st.stream_of(self.run_id)

    def append(self, events: list[NewEvent]) -> None:
        """Append at the exact next version; retry an in-doubt batch (same ids, same bytes)."""
        expected = self.state.version if self.state.version >= 0 else NO_STREAM
        for attempt in range(3):
            try:
                result = self.store.append(self.stream, events, expected)
                break
            except StoreUnavailable:
                if attempt == 2:
                    raise
                time.sleep(0.5 * (attempt + 1))
        self.state.version, self.state.last_position = result.last_version, result.last_position

    def new(self, event: Event, *name: object, metadata: bytes = b"{}") -> NewEvent:
        return event.to_new_event(
            id=st.event_id(self.run_id, *name), run_id=self.run_id, metadata=metadata
        )


def start_run(
    store: EventStore,
    request: RunRequest,
    *,
    sensors: HostSensors | None = None,
    workdir: Path | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> RunSummary:
    """Start and drive a new run to its end (see the module docstring).

    Raises:
        UsageError: a bad setting, unreadable config, or a domain this machine cannot measure.
        WrongExpectedVersion: another writer appended to the run's stream.
    """
    regimes, caps = load_regimes(request.regimes_path), load_caps(request.caps_path)
    spec = _domain(regimes, request.domain)
    reason = unavailable(spec)
    if reason is not None:
        raise UsageError(f"cannot measure domain {request.domain!r} here: {reason}")
    config = _config(request, regimes, caps)
    run_id = request.run_id or _new_run_id(request.domain)
    manifest = DreamManifest(
        code_hash=code_hash(), regimes_sha256=regimes.sha256, caps_sha256=caps.sha256,
        rng_seed=config.seed,
    )  # fmt: skip
    run = _Run(store, run_id, config, regimes, caps, sensors or HostSensors(),
               workdir or Path(tempfile.gettempdir()), st.RunState(run_id=run_id),
               progress or _quiet, notice or _quiet)  # fmt: skip
    from labledger import __version__

    started = RunStarted(
        subsystem=Subsystem.DREAM, config=msgspec.to_builtins(config), code_version=__version__,
        host=socket.gethostname() or "unknown", heartbeat_interval_s=_beat_interval(config),
        manifest=manifest,
    )  # fmt: skip
    run.append([run.new(started, "started")])
    return _drive(run)


def resume_run(
    store: EventStore,
    run_id: str,
    *,
    regimes_path: Path | None = None,
    caps_path: Path | None = None,
    sensors: HostSensors | None = None,
    workdir: Path | None = None,
    progress: Progress | None = None,
    notice: Notice | None = None,
) -> RunSummary:
    """Continue run ``run_id`` as a new attempt after its last recorded trial.

    The configuration files must be byte-identical to the run's (their SHA-256
    is in its manifest); by default the ones it recorded are loaded again.

    Raises:
        UsageError: no such run, it already finished, or its configuration changed.
        WrongExpectedVersion: another writer appended to the run's stream meanwhile.
    """
    state = st.fold_run(run_id, typed(store.read_stream(st.stream_of(run_id))))
    if state.started is None or state.config is None or state.started.manifest is None:
        raise UsageError(f"no D-REAM run {run_id!r}: stream {st.stream_of(run_id)!r} is empty")
    if state.finished is not None:
        raise UsageError(f"run {run_id!r} already finished ({state.finished.outcome.value})")
    config, manifest = state.config, state.started.manifest
    regimes = load_regimes(regimes_path or _recorded(config.regimes_file))
    caps = load_caps(caps_path or _recorded(config.caps_file))
    for what, got, want in (("regimes", regimes.sha256, manifest.regimes_sha256),
                            ("caps", caps.sha256, manifest.caps_sha256)):  # fmt: skip
        if got != want:
            raise UsageError(
                f"run {run_id!r} used a different {what} file (sha256 {want[:12]}…): "
                f"pass that file with --{what}"
            )
    run = _Run(store, run_id, config, regimes, caps, sensors or HostSensors(),
               workdir or Path(tempfile.gettempdir()), state,
               progress or _quiet, notice or _quiet)  # fmt: skip
    if code_hash() != manifest.code_hash:
        run.notice(f"run {run_id}: the D-REAM code changed since it started; continuing")
    resumed = RunResumed(
        attempt=state.attempt + 1, resumes_attempt=state.attempt,
        checkpoint_id=f"{st.stream_of(run_id)}@{state.version}",
        checkpoint_position=state.last_position,
    )  # fmt: skip
    run.append([run.new(resumed, "resumed", state.attempt + 1)])
    state.attempt, state.heartbeat_seq = resumed.attempt, -1
    return _drive(run)


def _recorded(name: str) -> Path | None:
    return None if name == "shipped" else Path(name)


def _domain(regimes: RegimesFile, domain: str) -> DomainSpec:
    script_path(regimes.config, regimes.path, domain)  # unknown domain → UsageError
    return regimes.config.domains[domain]


def _config(request: RunRequest, regimes: RegimesFile, caps: CapsFile) -> st.RunConfig:
    policy = regimes.config.policy
    trials = request.trials if request.trials is not None else policy.trials
    budget = request.budget_ms if request.budget_ms is not None else policy.budget_ms
    if min(request.generations, request.population, trials, budget) < 1:
        raise UsageError("generations, population, trials and budget-ms must be >= 1")
    scales = {r.value: regimes.config.regimes[r].scale for r in Regime}
    return st.RunConfig(
        domain=request.domain, generations=request.generations,
        population=request.population, trials=trials,
        seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
        retries=policy.retries, timeout_s=policy.timeout_s,
        heartbeat_every=policy.heartbeat_every, regimes=list(scales),
        budgets_ms=st.budgets_ms(budget, scales),
        regimes_file="shipped" if regimes.shipped else str(regimes.path.resolve()),
        caps_file="shipped" if caps.shipped else str(caps.path.resolve()),
    )  # fmt: skip


def _new_run_id(domain: str) -> str:
    return f"{domain}-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"


def _beat_interval(config: st.RunConfig) -> float:
    slowest_s = max(config.budgets_ms.values()) / 1000
    return round(config.heartbeat_every * (2 * slowest_s + 1.0), 3)


def _quiet(*_: Any) -> None:
    pass


# -- the loop -------------------------------------------------------------------


def _drive(run: _Run) -> RunSummary:
    cfg, spec = run.config, run.regimes.config.domains[run.config.domain]
    space = spec.genes
    summary = RunSummary(run.run_id, cfg.domain, run.state.attempt, 0, 0)
    population = evolve.initial_population(space, cfg.population, evolve.rng_for(cfg.seed, 0))
    scores: list[float] = []
    for g in range(cfg.generations):
        if g > 0:
            rng = evolve.rng_for(cfg.seed, g)
            population = evolve.next_population(
                population, scores, space, cfg.population, run.regimes.config.evolution, rng
            )
        if g not in run.state.completed:
            _measure_generation(run, g, population)
        scores, result = _judge(run, g)
        summary.generations.append(result)
        if g not in run.state.completed:
            done = GenerationCompleted(
                domain=cfg.domain, generation=g, candidates=len(population),
                regimes=[Regime(r) for r in cfg.regimes], trials_per_regime=cfg.trials,
                best_cand_id=result.best_cand_id,
            )  # fmt: skip
            run.append([run.new(done, "generation", g)])
            run.state.completed[g] = done
    finished = RunFinished(attempt=run.state.attempt, outcome=RunOutcome.SUCCEEDED,
                           detail=f"{cfg.generations} generations")  # fmt: skip
    run.append([run.new(finished, "finished")])
    summary.trials_measured, summary.trials_in_log = run.measured, len(run.state.trials)
    return summary


def _measure_generation(run: _Run, g: int, population: list[evolve.Genome]) -> None:
    cfg = run.config
    total = cfg.total_trials()
    for i, genome in enumerate(population):
        cid = st.cand_id(run.run_id, g, i)
        for regime, t in st.trial_plan(cfg.regimes, cfg.trials):
            if cid in run.state.caps:
                break  # an unsafe candidate is not measured further
            key = st.TrialKey(g, cid, regime, t)
            if key not in run.state.trials:
                _trial(run, key, genome)
            run.progress(_done(run, g, i, regime, t), total)


def _done(run: _Run, g: int, i: int, regime: str, t: int) -> int:
    cfg = run.config
    per_cand = len(cfg.regimes) * cfg.trials
    return (g * cfg.population + i) * per_cand + cfg.regimes.index(regime) * cfg.trials + t + 1


def _trial(run: _Run, key: st.TrialKey, genome: evolve.Genome) -> None:
    cfg, regimes = run.config, run.regimes
    regime_spec = regimes.config.regimes[Regime(key.regime)]
    domain_caps = run.caps.config.for_domain(cfg.domain)
    sensor = domain_caps.temp_peak_c.sensor if domain_caps.temp_peak_c else None
    spec = TrialSpec(
        script=script_path(regimes.config, regimes.path, cfg.domain), genome=genome,
        budget_ms=cfg.budgets_ms[key.regime], mode=regime_spec.mode,
        background=regime_spec.background, timeout_s=cfg.timeout_s, workdir=run.workdir,
        seed=zlib.crc32(f"{cfg.seed}/{key}".encode()), sensor=sensor,
        tool=regimes.config.domains[cfg.domain].tool,
    )  # fmt: skip
    got = measure(spec, cfg.retries, run.sensors, regimes.config.background)
    trial = TrialRecorded(
        domain=cfg.domain, regime=Regime(key.regime), cand_id=key.cand_id,
        generation=key.generation, trial=key.trial, genome=dict[str, Any](genome), kpis=got.kpis,
    )  # fmt: skip
    name = ("trial", key.generation, key.cand_id, key.regime, key.trial)
    events = [run.new(trial, *name, metadata=_metadata(run, spec, got))]
    for b in st.breaches(got.kpis, domain_caps):
        cap = CapEvent(
            domain=cfg.domain, regime=Regime(key.regime), cand_id=key.cand_id,
            generation=key.generation, trial=key.trial, metric=b.metric, sensor=b.cap.sensor,
            cap=b.cap.max, observed=b.observed,
        )  # fmt: skip
        events.append(run.new(cap, *name, "cap", b.metric.value))
    run.measured += 1
    if run.measured % cfg.heartbeat_every == 0:
        events.append(_heartbeat(run, key))
    run.append(events)
    run.state.trials[key] = (run.state.last_position, got.kpis)
    if len(events) > 1 and any(e.type == CapEvent.TYPE for e in events):
        run.state.caps.setdefault(key.cand_id, run.state.last_position)


def _metadata(run: _Run, spec: TrialSpec, got: Measured) -> bytes:
    return _canon({
        "attempt": run.state.attempt, "budget_ms": spec.budget_ms, "workload": got.command,
        "workload_attempts": got.attempts, "failures": got.failures,
        "wall_ms": round(got.wall_ms, 3),
    })  # fmt: skip


def _heartbeat(run: _Run, key: st.TrialKey) -> NewEvent:
    seq = run.state.heartbeat_seq + 1
    run.state.heartbeat_seq = seq
    text = f"generation {key.generation} {key.cand_id} {key.regime} trial {key.trial}"
    beat = Heartbeat(attempt=run.state.attempt, seq=seq, progress=text)
    return run.new(beat, "heartbeat", run.state.attempt, seq)


def _judge(run: _Run, g: int) -> tuple[list[float], GenerationResult]:
    """Each candidate's fitness: its ``score_v2`` in the ``dream_candidates`` read model."""
    engine = ProjectionEngine(run.store, [p for p in all_projections()
                                          if p.name == "dream_candidates"])  # fmt: skip
    engine.catch_up("dream_candidates")
    cids = [st.cand_id(run.run_id, g, i) for i in range(run.config.population)]
    with engine.read("dream_candidates") as tx:
        found = candidate_scores(tx, run.config.domain, cids)
    judged = [found.get((run.config.domain, cid), (-math.inf, True)) for cid in cids]
    scores = [score for score, _ in judged]
    best = evolve.best_index(scores)
    unsafe = sum(1 for _, safe in judged if not safe)
    result = GenerationResult(g, None if best is None else cids[best],
                              None if best is None else scores[best], unsafe)  # fmt: skip
    text = "no safe candidate" if best is None else f"best {cids[best]} score_v2 {scores[best]:.6g}"
    run.notice(f"dream {run.config.domain} generation {g}: {text} ({unsafe} unsafe)")
    return scores, result
