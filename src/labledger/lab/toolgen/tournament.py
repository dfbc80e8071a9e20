"""The ToolGen tournament: generations bred across epochs, each trial one atomic batch.

Per (epoch, spec) of the curriculum the tournament first waits until RepairLab
has answered every earlier handoff of the run (so its challengers are in the
archive whatever the timing), then breeds the generation from the spec's
archive (``evolve``) and appends it as ``GenerationPlanned``. Each member is
then a trial: render its genome, store code and SBOM as blobs, evaluate it in
budgeted subprocesses, and append ``ToolSynthesized``, ``ToolEvaluated`` and —
when correctness < 1 — ``HandoffRequested`` (with the failing test output as a
blob) to ``toolgen-<run>`` in **one** batch, checked against the stream's
expected version. A trial is either wholly in the log or not at all.

Resume (after SIGKILL or any crash): the log is the checkpoint. The run's
config comes from its ``RunStarted``; the generations planned and the trials
done are read from its stream, the archive from them and from RepairLab's
streams, so the remaining trials are exactly the planned members not yet
recorded, and a generation not yet planned is bred from the same archive it
would have been. A ``RunResumed`` marks the new attempt. Event
ids are ``uuid5`` of (run, trial, kind) and every batch goes out at the exact
expected version: a batch that did commit before the crash is found and
skipped, a retried one is ``already_appended``, and a second writer of the same
run gets ``WrongExpectedVersion`` instead of duplicating a trial.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from labledger._version import __version__
from labledger.errors import UsageError
from labledger.events import Event
from labledger.events._types import ConfigValue
from labledger.events.runs import RunStarted, Subsystem
from labledger.events.toolgen import (
    ChallengerEntered,
    GenerationPlanned,
    Genome,
    HandoffRequested,
    Member,
    RepairAttempted,
    RepairSucceeded,
    ToolEvaluated,
    ToolSynthesized,
)
from labledger.events.typed import typed
from labledger.lab.runs import RunLog, StreamWriter
from labledger.lab.toolgen import evolve, records, synth
from labledger.lab.toolgen.budgets import anneal_temp, budgets_for
from labledger.lab.toolgen.evaluate import DEFAULT_TIMED_RUNS, evaluate
from labledger.lab.toolgen.evolve import Scored
from labledger.lab.toolgen.plan import Trial, generation_key, schedule
from labledger.lab.toolgen.specs import get_spec
from labledger.store import AppendResult, EventStore, NewEvent

_encode = msgspec.json.Encoder(order="sorted").encode


class TournamentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A tournament's settings, recorded in its ``RunStarted`` (resume reads them back)."""

    epochs: int
    specs: tuple[str, ...] = ("text_deduplicate", "json_flatten", "prefix_search")
    seed: int = 0
    timed_runs: int = DEFAULT_TIMED_RUNS
    curriculum: str = "seed"
    population: int = 6
    """Members per (epoch, spec) generation."""
    repair_timeout_s: float = 60.0
    """RepairLab's time budget per handoff (all its attempts together)."""
    repair_attempts: int = 24
    """RepairLab's attempt budget per handoff."""

    def generations(self) -> list[tuple[int, str]]:
        """The run's (epoch, spec) generations, in order (see ``plan.py``)."""
        return schedule(self.epochs, self.specs, self.curriculum)

    def total_trials(self) -> int:
        """How many trials the run holds when it is done."""
        return len(self.generations()) * self.population


@dataclass
class TournamentState:
    """What the log says about a tournament: lifecycle, settings, generations, trials."""

    log: RunLog
    """The lifecycle stream ``run-<run>``."""
    trials: StreamWriter
    """The trials stream ``toolgen-<run>``, appended at exact versions."""
    config: TournamentConfig
    done: set[str] = field(default_factory=set)
    """Tool ids of the trials already recorded."""
    handoffs: set[str] = field(default_factory=set)
    generations: dict[tuple[int, str], GenerationPlanned] = field(default_factory=dict)
    genomes: dict[str, Genome] = field(default_factory=dict)
    archive: dict[str, dict[str, Scored]] = field(default_factory=dict)
    """spec → tool id → its latest evaluation (originals; challengers are added on plan)."""

    @property
    def attempt(self) -> int:
        """The current attempt (0 until a resume)."""
        return self.log.attempt

    @property
    def finished(self) -> bool:
        """Whether the run recorded its ``RunFinished``."""
        return self.log.finished is not None

    def score(self, ev: ToolEvaluated, position: int, genome: Genome) -> None:
        """Archive an evaluation (the latest one of a tool wins)."""
        self.archive.setdefault(ev.spec_id, {})[ev.tool_id] = Scored(
            tool_id=ev.tool_id,
            genome=genome,
            fitness=ev.fitness,
            median_ms=ev.median_ms,
            position=position,
        )


def start_run(store: EventStore, run_id: str, config: TournamentConfig) -> TournamentState:
    """Record ``RunStarted`` for a new run.

    Raises:
        UsageError: the run already exists (resume it instead).
    """
    for name in config.specs:
        get_spec(name)  # unknown specs fail before anything is written
    log = RunLog(store, records.TOOLGEN_RUNS, run_id)
    if store.stream_version(log.stream) >= 0:
        raise UsageError(f"run {run_id!r} exists: resume it with --resume {run_id}")
    started = RunStarted(
        subsystem=Subsystem.TOOLGEN,
        config=_config_values(config),
        code_version=f"labledger {__version__}",
        host=platform.node() or "localhost",
    )
    log.start(started)
    return TournamentState(log, StreamWriter(store, records.trials_stream(run_id)), config)


def _config_values(config: TournamentConfig) -> dict[str, ConfigValue]:
    values: dict[str, ConfigValue] = msgspec.to_builtins(config)
    return values


def read_state(store: EventStore, run_id: str) -> TournamentState:
    """The run's config and progress, from its two streams.

    Raises:
        UsageError: no such run.
    """
    log = RunLog.load(store, records.TOOLGEN_RUNS, run_id)
    if log.started is None:
        raise UsageError(f"no toolgen run {run_id!r} in this ledger")
    config = msgspec.convert(log.started.config, TournamentConfig)
    state = TournamentState(log, StreamWriter(store, records.trials_stream(run_id)), config)
    for item in typed(store.read_stream(state.trials.stream)):
        _replay(state, item.event, item.position)
        state.trials.version, state.trials.last_position = item.record.stream_version, item.position
    return state


def _replay(state: TournamentState, event: Event, position: int) -> None:
    match event:
        case GenerationPlanned():
            state.generations[(event.epoch, event.spec_id)] = event
            state.genomes.update((m.tool_id, m.genome) for m in event.members)
        case ToolSynthesized():
            state.done.add(event.tool_id)
        case ToolEvaluated() if event.tool_id in state.genomes:
            state.score(event, position, state.genomes[event.tool_id])
        case HandoffRequested():
            state.handoffs.add(event.handoff_id)
        case _:
            pass


def resume_run(store: EventStore, run_id: str) -> TournamentState:
    """Read the run back and, unless it finished, record a new attempt (``RunResumed``)."""
    state = read_state(store, run_id)
    if state.finished:
        return state
    trials = state.trials
    if trials.version >= 0:
        checkpoint = trials.last_position
    else:  # no trial yet: the new attempt continues after the start
        checkpoint = store.read_stream(state.log.stream, limit=1)[0].position
    state.log.resume(
        checkpoint_id=f"{trials.stream}@{trials.version}", checkpoint_position=checkpoint
    )
    return state


def run_trial(store: EventStore, run_id: str, trial: Trial, state: TournamentState) -> AppendResult:
    """Synthesize, evaluate and record one trial (one atomic batch); updates ``state``."""
    spec = get_spec(trial.spec_id)
    tool = records.tool_id(run_id, trial.key)
    budgets = budgets_for(trial.epoch)
    code = synth.render(spec.id, trial.genome, trial.epoch, budgets)
    sbom = synth.sbom(
        tool_id=tool,
        spec_id=spec.id,
        style=trial.style,
        epoch=trial.epoch,
        budgets=budgets,
        code=code,
        mutations=trial.genome.mutations,
        anneal_gene=trial.genome.anneal_gene,
        lineage="original" if trial.parent_tool_id is None else "offspring",
    )
    code_sha, sbom_sha = store.put_blob(code.encode()), store.put_blob(sbom)
    measured = evaluate(
        code,
        spec,
        budgets,
        hash_seeds=records.hash_seeds(tool),
        timed_runs=state.config.timed_runs,
    )
    made = records.synthesized(tool, spec.id, trial.genome, trial.epoch, code_sha, sbom_sha)
    scored = records.evaluated(tool, spec, trial.genome, trial.epoch, code, measured)
    batch: list[tuple[str, Event]] = [("synthesized", made), ("evaluated", scored)]
    if scored.correctness < 1.0:
        report = store.put_blob(_encode({"failures": measured.failures, "detail": measured.detail}))
        batch.append(("handoff", records.handoff(tool, spec, scored, code_sha, report)))
    result = state.trials.append(_trial_events(state.log, trial, batch))
    assert result is not None  # the batch is never empty
    state.done.add(tool)
    state.genomes[tool] = trial.genome
    state.score(scored, result.first_position + 1, trial.genome)
    if len(batch) == 3:
        state.handoffs.add(records.handoff_id(tool))
    return result


def plan_generation(
    store: EventStore, run_id: str, state: TournamentState, epoch: int, spec_id: str
) -> GenerationPlanned:
    """Breed and record the (epoch, spec) generation.

    The caller has waited for RepairLab: the archive then holds every challenger
    of the run's earlier handoffs (read from their streams here).
    """
    config = state.config
    _archive_challengers(store, state)
    archive = list(state.archive.get(spec_id, {}).values())
    rng = evolve.rng_for(config.seed, spec_id, epoch)
    children, parents = evolve.next_generation(
        spec_id, archive, config.population, rng, anneal_temp(epoch)
    )
    members = [
        Member(
            tool_id=records.tool_id(run_id, generation_key(epoch, spec_id, n)),
            genome=genome,
            parent_tool_id=parent,
        )
        for n, (genome, parent) in enumerate(children)
    ]
    planned = GenerationPlanned(epoch=epoch, spec_id=spec_id, members=members, parents=parents)
    key = records.generation_events_key(epoch, spec_id)
    state.trials.append([state.log.new(planned, key, "generation")])
    _replay(state, planned, 0)
    return planned


def _archive_challengers(store: EventStore, state: TournamentState) -> None:
    """Add RepairLab's challengers to the archive: a challenger's genome is its parent's
    with the repairing edit (the succeeded attempt's operator) appended."""
    for handoff in sorted(state.handoffs):
        agents: dict[int, str] = {}
        edit: str | None = None
        for item in typed(store.read_stream(records.repair_stream(handoff))):
            event = item.event
            if isinstance(event, RepairAttempted):
                agents[event.attempt] = event.agent
            elif isinstance(event, RepairSucceeded):
                edit = agents.get(event.attempt)
            elif isinstance(event, ChallengerEntered) and event.parent_tool_id in state.genomes:
                parent = state.genomes[event.parent_tool_id]
                fix = [edit] if edit else []
                state.genomes[event.tool_id] = msgspec.structs.replace(
                    parent, impl_style=event.impl_style, mutations=[*parent.mutations, *fix]
                )
            elif isinstance(event, ToolEvaluated) and event.tool_id in state.genomes:
                state.score(event, item.position, state.genomes[event.tool_id])


def _trial_events(log: RunLog, trial: Trial, batch: list[tuple[str, Event]]) -> list[NewEvent]:
    """The trial's events, each caused by its ``ToolSynthesized`` (the batch's first)."""
    first_id = log.event_id(trial.key, "synthesized")
    return [
        log.new(event, trial.key, kind, causation_id=None if kind == "synthesized" else first_id)
        for kind, event in batch
    ]


def beat(store: EventStore, run_id: str, state: TournamentState, progress: str) -> None:
    """Record a ``Heartbeat`` of the current attempt."""
    state.log.append([state.log.heartbeat(progress)])


def finish_run(store: EventStore, run_id: str, state: TournamentState, detail: str) -> None:
    """Record ``RunFinished`` (succeeded) once."""
    state.log.finish(detail)


def trials_of(generation: GenerationPlanned) -> list[Trial]:
    """The generation's members as trials, in member order."""
    return [
        Trial(
            epoch=generation.epoch,
            spec_id=generation.spec_id,
            member=n,
            genome=m.genome,
            parent_tool_id=m.parent_tool_id,
        )
        for n, m in enumerate(generation.members)
    ]


def run_epochs(
    store: EventStore,
    run_id: str,
    state: TournamentState,
    on_trial: Callable[[Trial, AppendResult], None] | None = None,
    wait_for_repairs: Callable[[], None] = lambda: None,
) -> None:
    """Plan and run every remaining generation, beating once per epoch in which trials ran.

    Args:
        store, run_id, state: the run.
        on_trial: called after each recorded trial (progress).
        wait_for_repairs: blocks until RepairLab answered every handoff so far;
            called before a generation is bred, so its archive is complete.
    """
    schedule_ = state.config.generations()
    for n, (epoch, spec_id) in enumerate(schedule_):
        generation = state.generations.get((epoch, spec_id))
        if generation is None:
            wait_for_repairs()
            generation = plan_generation(store, run_id, state, epoch, spec_id)
        ran = False
        for trial in trials_of(generation):
            if records.tool_id(run_id, trial.key) in state.done:
                continue
            result = run_trial(store, run_id, trial, state)
            ran = True
            if on_trial is not None:
                on_trial(trial, result)
        last_of_epoch = n + 1 == len(schedule_) or schedule_[n + 1][0] != epoch
        if ran and last_of_epoch:
            total = state.config.total_trials()
            progress = f"epoch {epoch + 1}/{state.config.epochs}: {len(state.done)}/{total} trials"
            beat(store, run_id, state, progress)
