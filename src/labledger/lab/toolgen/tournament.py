"""The ToolGen tournament: the epoch loop, each trial one atomic batch in the log.

A trial (epoch, spec, style) renders its tool, stores the code and SBOM as
blobs, evaluates the tool in budgeted subprocesses, and appends
``ToolSynthesized``, ``ToolEvaluated`` and — when correctness < 1 —
``HandoffRequested`` to ``toolgen-<run>`` in **one** batch, checked against the
stream's expected version. A trial is therefore either wholly in the log or
not at all; there is no half-recorded trial to repair after a crash.

Resume (after SIGKILL or any crash): the log is the checkpoint. The run's
config comes from its ``RunStarted``; the trials already done are the
``ToolSynthesized`` events of its stream; the plan is a pure function of the
config, so the remaining trials are exactly the planned ones not yet recorded.
A ``RunResumed`` marks the new attempt, with the last recorded trial as its
checkpoint. The lifecycle (``run-<run>``) is a :class:`~labledger.lab.runs.RunLog`;
event ids are ``uuid5`` of (run, trial, kind), and a trial batch
goes out with the exact expected version it was planned against: a batch that
did commit before the crash is found in the log and skipped, a retried one is
``already_appended``, and a second writer of the same run gets
``WrongExpectedVersion`` instead of duplicating a trial.
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
from labledger.events.toolgen import HandoffRequested, ToolSynthesized
from labledger.events.typed import typed
from labledger.lab.runs import RunLog, StreamWriter
from labledger.lab.toolgen import records, synth
from labledger.lab.toolgen.budgets import budgets_for
from labledger.lab.toolgen.evaluate import DEFAULT_TIMED_RUNS, evaluate
from labledger.lab.toolgen.plan import Trial, plan
from labledger.lab.toolgen.specs import get_spec
from labledger.store import AppendResult, EventStore, NewEvent


class TournamentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A tournament's settings, recorded in its ``RunStarted`` (resume reads them back)."""

    epochs: int
    specs: tuple[str, ...] = ("text_deduplicate", "json_flatten", "prefix_search")
    seed: int = 0
    timed_runs: int = DEFAULT_TIMED_RUNS
    curriculum: str = "seed"
    fault_rate: float = 0.25
    repair_timeout_s: float = 60.0

    def trials(self) -> list[Trial]:
        """The run's plan (see ``plan.py``)."""
        return plan(
            self.epochs,
            self.specs,
            seed=self.seed,
            curriculum=self.curriculum,
            fault_rate=self.fault_rate,
        )


@dataclass
class TournamentState:
    """What the log says about a tournament: its lifecycle, settings and recorded trials."""

    log: RunLog
    """The lifecycle stream ``run-<run>``."""
    trials: StreamWriter
    """The trials stream ``toolgen-<run>``, appended at exact versions."""
    config: TournamentConfig
    done: set[str] = field(default_factory=set)
    """Tool ids of the trials already recorded."""
    handoffs: set[str] = field(default_factory=set)

    @property
    def attempt(self) -> int:
        """The current attempt (0 until a resume)."""
        return self.log.attempt

    @property
    def finished(self) -> bool:
        """Whether the run recorded its ``RunFinished``."""
        return self.log.finished is not None


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
        if isinstance(item.event, ToolSynthesized):
            state.done.add(item.event.tool_id)
        elif isinstance(item.event, HandoffRequested):
            state.handoffs.add(item.event.handoff_id)
        state.trials.version, state.trials.last_position = item.record.stream_version, item.position
    return state


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
    fault = spec.fault(trial.fault, trial.style) if trial.fault else None
    code = synth.render(spec.id, trial.style, trial.epoch, budgets, fault)
    sbom = synth.sbom(
        tool_id=tool,
        spec_id=spec.id,
        style=trial.style,
        epoch=trial.epoch,
        budgets=budgets,
        code=code,
        mutations=[] if fault is None else [fault.id],
    )
    code_sha, sbom_sha = store.put_blob(code.encode()), store.put_blob(sbom)
    measured = evaluate(
        code,
        spec,
        budgets,
        hash_seeds=records.hash_seeds(tool),
        timed_runs=state.config.timed_runs,
    )
    made = records.synthesized(tool, spec.id, trial.style, trial.epoch, code_sha, sbom_sha)
    scored = records.evaluated(tool, spec, trial.style, trial.epoch, code, measured)
    batch: list[tuple[str, Event]] = [("synthesized", made), ("evaluated", scored)]
    if scored.correctness < 1.0:
        batch.append(("handoff", records.handoff(tool, spec, scored, code_sha)))
    result = state.trials.append(_trial_events(state.log, trial, batch))
    assert result is not None  # the batch is never empty
    state.done.add(tool)
    if len(batch) == 3:
        state.handoffs.add(records.handoff_id(tool))
    return result


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


def remaining(run_id: str, state: TournamentState) -> list[Trial]:
    """The planned trials the log does not hold yet, in plan order."""
    return [t for t in state.config.trials() if records.tool_id(run_id, t.key) not in state.done]


def run_epochs(
    store: EventStore,
    run_id: str,
    state: TournamentState,
    on_trial: Callable[[Trial, AppendResult], None] | None = None,
) -> None:
    """Run every remaining trial, beating once per epoch in which trials ran."""
    todo = remaining(run_id, state)
    total = len(state.config.trials())
    for n, trial in enumerate(todo):
        result = run_trial(store, run_id, trial, state)
        if on_trial is not None:
            on_trial(trial, result)
        if n + 1 == len(todo) or todo[n + 1].epoch != trial.epoch:
            progress = (
                f"epoch {trial.epoch + 1}/{state.config.epochs}: {len(state.done)}/{total} trials"
            )
            beat(store, run_id, state, progress)
