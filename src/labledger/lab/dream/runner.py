"""The D-REAM run loop: measure generations of candidates and write everything to the log.

The whole run is one stream, ``dream-<run_id>``, appended with exact expected
versions, so a second writer of the same run fails with
``WrongExpectedVersion`` instead of interleaving. In order:

``run.RunStarted`` (config, :class:`DreamManifest`) → per trial one batch of
``dream.TrialRecorded`` + any ``dream.SafetyCapExceeded`` (+ a
``run.Heartbeat`` every ``heartbeat_every`` trials) → per generation a
``dream.GenerationCompleted`` → ``run.RunFinished``.

Selection reads each candidate's ``score_v2`` from the ``dream_candidates``
read model (caught up after the generation's last trial; see
``report.candidate_scores``), never from a side file. The score is on the
baseline's scale; the first generation, measured before any baseline exists,
is scored against the candidate that the baseline rule is about to choose
(``projections.dream.baseline_candidate``), so every generation is judged on
one scale. Each trial's raw workload output is stored as a blob and named by
its event (``output_sha256``).

``--refresh-baseline`` appends a ``dream.BaselineRefreshRequested`` right
after the ``run.RunStarted``, so the run's first successful candidate
replaces the baseline.

Resume (:func:`resume_run`) folds the stream, appends ``run.RunResumed``
whose checkpoint is the stream's last event (each trial is one atomic batch,
so the last event always closes a complete trial and nothing is superseded),
and continues with the first trial not in the log.
"""

from __future__ import annotations

import math
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from labledger.errors import UsageError
from labledger.events.dream import (
    BaselineRefreshRequested,
    GenerationCompleted,
    Regime,
    TrialRecorded,
)
from labledger.events.dream import SafetyCapExceeded as CapEvent
from labledger.lab.dream import _setup, evolve
from labledger.lab.dream import state as st
from labledger.lab.dream._setup import RunRequest
from labledger.lab.dream.config import (
    CapsFile,
    DomainCaps,
    DomainSpec,
    RegimesFile,
    code_hash,
    load_caps,
    load_regimes,
    script_path,
)
from labledger.lab.dream.measure import Measured, TrialSpec, measure, unavailable
from labledger.lab.dream.report import candidate_scores, reference_means
from labledger.lab.dream.sensors import HostSensors
from labledger.lab.runs import RunLog
from labledger.projections import ProjectionEngine, all_projections
from labledger.store import EventStore, NewEvent

_canon = msgspec.json.Encoder(order="sorted").encode
Progress = Callable[[int, int], None]
Notice = Callable[[str], None]


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
    log: RunLog
    config: st.DreamRunConfig
    regimes: RegimesFile
    caps: CapsFile
    sensors: HostSensors
    workdir: Path
    state: st.DreamRunState
    progress: Progress
    notice: Notice
    measured: int = 0

    @property
    def run_id(self) -> str:
        return self.log.run_id


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
    config = _setup.config_of(request, regimes, caps)
    log = RunLog(store, st.DREAM_RUNS, request.run_id or _setup.new_run_id(request.domain))
    state = st.DreamRunState(config=config)
    run = _Run(log, config, regimes, caps, *_io(sensors, workdir), state, *_out(progress, notice))
    log.start(_setup.started(config, regimes, caps))
    _request_refresh(run, request.refresh_baseline)
    return _drive(run)


def _request_refresh(run: _Run, targets: tuple[str | None, ...]) -> None:
    events = []
    for target in targets:
        domain, _, regime = (target or run.config.domain).partition(":")
        if regime and regime not in run.config.regimes:
            raise UsageError(f"--refresh-baseline {target}: unknown regime {regime!r}")
        refresh = BaselineRefreshRequested(
            domain=domain or run.config.domain,
            regime=Regime(regime) if regime else None,
            requested_by=run.log.kind.actor or "labledger",
            reason=f"dream run --refresh-baseline {target or ''}".strip(),
        )
        events.append(run.log.new(refresh, "refresh", target or ""))
    if events:
        run.log.append(events)


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
    state = st.DreamRunState()
    log = RunLog.load(store, st.DREAM_RUNS, run_id, apply=state.apply)
    if log.started is None or state.config is None or log.started.manifest is None:
        raise UsageError(f"no D-REAM run {run_id!r}: stream {log.stream!r} is empty")
    if log.finished is not None:
        raise UsageError(f"run {run_id!r} already finished ({log.finished.outcome.value})")
    config, manifest = state.config, log.started.manifest
    regimes = load_regimes(regimes_path or _setup.recorded(config.regimes_file))
    caps = load_caps(caps_path or _setup.recorded(config.caps_file))
    _setup.check_recorded(run_id, manifest, regimes, caps)
    run = _Run(log, config, regimes, caps, *_io(sensors, workdir), state, *_out(progress, notice))
    if code_hash() != manifest.code_hash:
        run.notice(f"run {run_id}: the D-REAM code changed since it started; continuing")
    # Each trial is one atomic batch, so the stream's last event closes a complete
    # trial: it is the checkpoint, and nothing of the dead attempt is superseded.
    log.resume(checkpoint_id=f"{log.stream}@{log.version}", checkpoint_position=log.last_position)
    return _drive(run)


def _io(sensors: HostSensors | None, workdir: Path | None) -> tuple[HostSensors, Path]:
    return sensors or HostSensors(), workdir or Path(tempfile.gettempdir())


def _out(progress: Progress | None, notice: Notice | None) -> tuple[Progress, Notice]:
    return progress or _quiet, notice or _quiet


def _domain(regimes: RegimesFile, domain: str) -> DomainSpec:
    script_path(regimes.config, regimes.path, domain)  # unknown domain → UsageError
    return regimes.config.domains[domain]


def _quiet(*_: Any) -> None:
    pass


# -- the loop -------------------------------------------------------------------


def _drive(run: _Run) -> RunSummary:
    cfg, spec = run.config, run.regimes.config.domains[run.config.domain]
    space = spec.genes
    summary = RunSummary(run.run_id, cfg.domain, run.log.attempt, 0, 0)
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
            _complete(run, g, len(population), result)
    run.log.finish(f"{cfg.generations} generations")
    summary.trials_measured, summary.trials_in_log = run.measured, len(run.state.trials)
    return summary


def _complete(run: _Run, g: int, candidates: int, result: GenerationResult) -> None:
    cfg = run.config
    done = GenerationCompleted(
        domain=cfg.domain,
        generation=g,
        candidates=candidates,
        regimes=[Regime(r) for r in cfg.regimes],
        trials_per_regime=cfg.trials,
        best_cand_id=result.best_cand_id,
        packs=[st.cand_id(run.run_id, g, i) for i in range(candidates)],
        best_fitness=result.best_score,
    )
    run.log.append([run.log.new(done, "generation", g)])
    run.state.completed[g] = done


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
    """Measure one trial and append it, its cap breaches and maybe a heartbeat, as one batch."""
    cfg = run.config
    domain_caps = run.caps.config.for_domain(cfg.domain)
    spec = _trial_spec(run, key, genome, domain_caps)
    got = measure(spec, cfg.retries, run.sensors, run.regimes.config.background)
    output = run.log.store.put_blob(got.stdout.encode()) if got.stdout else None
    trial = TrialRecorded(
        domain=cfg.domain,
        regime=Regime(key.regime),
        cand_id=key.cand_id,
        generation=key.generation,
        trial=key.trial,
        genome=dict[str, Any](genome),
        kpis=got.kpis,
        sensors=got.sensors,
        units=cfg.units,
        failure=got.failure,
        output_sha256=output,
    )
    name = ("trial", key.generation, key.cand_id, key.regime, key.trial)
    events = [run.log.new(trial, *name, metadata=_metadata(run, spec, got))]
    events += _breaches(run, key, got, domain_caps, name)
    run.measured += 1
    if run.measured % cfg.heartbeat_every == 0:
        events.append(_heartbeat(run, key))
    run.log.append(events)
    run.state.trials[key] = (run.log.last_position, got.kpis)
    if len(events) > 1 and any(e.type == CapEvent.TYPE for e in events):
        run.state.caps.setdefault(key.cand_id, run.log.last_position)


def _trial_spec(
    run: _Run, key: st.TrialKey, genome: evolve.Genome, domain_caps: DomainCaps
) -> TrialSpec:
    cfg, regimes = run.config, run.regimes
    regime_spec = regimes.config.regimes[Regime(key.regime)]
    return TrialSpec(
        script=script_path(regimes.config, regimes.path, cfg.domain),
        genome=genome,
        budget_ms=cfg.budgets_ms[key.regime],
        mode=regime_spec.mode,
        background=regime_spec.background,
        timeout_s=cfg.timeout_s,
        workdir=run.workdir,
        seed=zlib.crc32(f"{cfg.seed}/{key}".encode()),
        sensor=domain_caps.temp_peak_c.sensor if domain_caps.temp_peak_c else None,
        tool=regimes.config.domains[cfg.domain].tool,
        min_requests=cfg.min_requests,
    )


def _breaches(
    run: _Run,
    key: st.TrialKey,
    got: Measured,
    domain_caps: DomainCaps,
    name: tuple[object, ...],
) -> list[NewEvent]:
    events = []
    for b in st.breaches(got.kpis, domain_caps):
        cap = CapEvent(
            domain=run.config.domain,
            regime=Regime(key.regime),
            cand_id=key.cand_id,
            generation=key.generation,
            trial=key.trial,
            metric=b.metric,
            sensor=b.cap.sensor,
            cap=b.cap.max,
            observed=b.observed,
        )
        events.append(run.log.new(cap, *name, "cap", b.metric.value))
    return events


def _metadata(run: _Run, spec: TrialSpec, got: Measured) -> bytes:
    return _canon(
        {
            "attempt": run.log.attempt,
            "budget_ms": spec.budget_ms,
            "workload": got.command,
            "workload_attempts": got.attempts,
            "failures": got.failures,
            "wall_ms": round(got.wall_ms, 3),
        }
    )


def _heartbeat(run: _Run, key: st.TrialKey) -> NewEvent:
    text = f"generation {key.generation} {key.cand_id} {key.regime} trial {key.trial}"
    return run.log.heartbeat(text)


def _judge(run: _Run, g: int) -> tuple[list[float], GenerationResult]:
    """Each candidate's fitness: its ``score_v2`` in the ``dream_candidates`` read model."""
    projections = [p for p in all_projections() if p.name == "dream_candidates"]
    engine = ProjectionEngine(run.log.store, projections)
    engine.catch_up("dream_candidates")
    cfg = run.config
    cids = [st.cand_id(run.run_id, g, i) for i in range(cfg.population)]
    with engine.read("dream_candidates") as tx:
        reference = reference_means(tx, cfg.domain, cfg.regimes, g, cfg.trials)
        found = candidate_scores(tx, cfg.domain, cids, reference=reference)
    judged = [found.get((run.config.domain, cid), (-math.inf, True)) for cid in cids]
    scores = [score for score, _ in judged]
    best = evolve.best_index(scores)
    unsafe = sum(1 for _, safe in judged if not safe)
    result = GenerationResult(
        g, None if best is None else cids[best], None if best is None else scores[best], unsafe
    )
    text = "no safe candidate" if best is None else f"best {cids[best]} score_v2 {scores[best]:.6g}"
    run.notice(f"dream {run.config.domain} generation {g}: {text} ({unsafe} unsafe)")
    return scores, result


__all__ = ["GenerationResult", "RunRequest", "RunSummary", "resume_run", "start_run"]
