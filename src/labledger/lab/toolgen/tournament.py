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
checkpoint. Event ids are ``uuid5`` of (run, trial, kind), and a trial batch
goes out with the exact expected version it was planned against: a batch that
did commit before the crash is found in the log and skipped, a retried one is
``already_appended``, and a second writer of the same run gets
``WrongExpectedVersion`` instead of duplicating a trial.
"""

from __future__ import annotations

import platform
from collections.abc import Callable

import msgspec

import labledger
from labledger.errors import UsageError
from labledger.events import Event
from labledger.events._types import ConfigValue
from labledger.events.runs import (
    Heartbeat,
    RunFinished,
    RunOutcome,
    RunResumed,
    RunStarted,
    Subsystem,
)
from labledger.events.toolgen import HandoffRequested, ToolSynthesized
from labledger.events.typed import decode_record
from labledger.lab.toolgen import records, synth
from labledger.lab.toolgen.budgets import budgets_for
from labledger.lab.toolgen.evaluate import DEFAULT_TIMED_RUNS, evaluate
from labledger.lab.toolgen.plan import Trial, plan
from labledger.lab.toolgen.specs import get_spec
from labledger.store import ANY, NO_STREAM, AppendResult, EventStore, ExpectedVersion

ACTOR = "toolgen"


class RunConfig(msgspec.Struct, frozen=True, kw_only=True):
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


class RunState(msgspec.Struct, kw_only=True):
    """What the log says about a run."""

    config: RunConfig
    attempt: int = 0
    finished: bool = False
    done: set[str] = msgspec.field(default_factory=set)
    """Tool ids of the trials already recorded."""
    handoffs: set[str] = msgspec.field(default_factory=set)
    trials_version: int = -1
    last_trial_position: int = 0
    heartbeats: int = 0


def _expected(version: int) -> ExpectedVersion:
    return NO_STREAM if version < 0 else version


def start_run(store: EventStore, run_id: str, config: RunConfig) -> RunState:
    """Record ``RunStarted`` for a new run.

    Raises:
        UsageError: the run already exists (resume it instead).
    """
    for name in config.specs:
        get_spec(name)  # unknown specs fail before anything is written
    if store.stream_version(records.run_stream(run_id)) >= 0:
        raise UsageError(f"run {run_id!r} exists: resume it with --resume {run_id}")
    started = RunStarted(
        subsystem=Subsystem.TOOLGEN,
        config=_config_values(config),
        code_version=f"labledger {labledger.__version__}",
        host=platform.node() or "localhost",
    )
    new = started.to_new_event(id=records.event_id(run_id, "started"), run_id=run_id, actor=ACTOR)
    store.append(records.run_stream(run_id), [new], NO_STREAM)
    return RunState(config=config)


def _config_values(config: RunConfig) -> dict[str, ConfigValue]:
    values: dict[str, ConfigValue] = msgspec.to_builtins(config)
    return values


def read_state(store: EventStore, run_id: str) -> RunState:
    """The run's config and progress, from its two streams.

    Raises:
        UsageError: no such run.
    """
    state: RunState | None = None
    for record in store.read_stream(records.run_stream(run_id)):
        event = decode_record(record).event
        if isinstance(event, RunStarted):
            state = RunState(config=msgspec.convert(event.config, RunConfig))
        elif state is not None and isinstance(event, RunResumed):
            state.attempt, state.heartbeats = max(state.attempt, event.attempt), 0
        elif state is not None and isinstance(event, Heartbeat) and event.attempt == state.attempt:
            state.heartbeats = max(state.heartbeats, event.seq)
        elif state is not None and isinstance(event, RunFinished):
            state.finished = True
    if state is None:
        raise UsageError(f"no toolgen run {run_id!r} in this ledger")
    for record in store.read_stream(records.trials_stream(run_id)):
        event = decode_record(record).event
        if isinstance(event, ToolSynthesized):
            state.done.add(event.tool_id)
        elif isinstance(event, HandoffRequested):
            state.handoffs.add(event.handoff_id)
        state.trials_version, state.last_trial_position = record.stream_version, record.position
    return state


def resume_run(store: EventStore, run_id: str) -> RunState:
    """Read the run back and, unless it finished, record a new attempt (``RunResumed``)."""
    state = read_state(store, run_id)
    if state.finished:
        return state
    attempt = state.attempt + 1
    checkpoint = (
        state.last_trial_position or store.read_stream(records.run_stream(run_id))[0].position
    )
    resumed = RunResumed(
        attempt=attempt,
        resumes_attempt=state.attempt,
        checkpoint_id=f"{records.trials_stream(run_id)}@{state.trials_version}",
        checkpoint_position=checkpoint,
    )
    new = resumed.to_new_event(
        id=records.event_id(run_id, "resumed", attempt), run_id=run_id, actor=ACTOR
    )
    store.append(records.run_stream(run_id), [new], ANY)
    state.attempt, state.heartbeats = attempt, 0
    return state


def run_trial(store: EventStore, run_id: str, trial: Trial, state: RunState) -> AppendResult:
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
    first_id = records.event_id(run_id, trial.key, "synthesized")
    new = [
        event.to_new_event(
            id=records.event_id(run_id, trial.key, kind),
            run_id=run_id,
            actor=ACTOR,
            causation_id=None if kind == "synthesized" else first_id,
        )
        for kind, event in batch
    ]
    result = store.append(records.trials_stream(run_id), new, _expected(state.trials_version))
    state.done.add(tool)
    if len(batch) == 3:
        state.handoffs.add(records.handoff_id(tool))
    state.trials_version, state.last_trial_position = result.last_version, result.last_position
    return result


def beat(store: EventStore, run_id: str, state: RunState, progress: str) -> None:
    """Record a ``Heartbeat`` of the current attempt."""
    state.heartbeats += 1
    hb = Heartbeat(attempt=state.attempt, seq=state.heartbeats, progress=progress)
    new = hb.to_new_event(
        id=records.event_id(run_id, "heartbeat", state.attempt, state.heartbeats),
        run_id=run_id,
        actor=ACTOR,
    )
    store.append(records.run_stream(run_id), [new], ANY)


def finish_run(store: EventStore, run_id: str, state: RunState, detail: str) -> None:
    """Record ``RunFinished`` (succeeded) once."""
    if state.finished:
        return
    done = RunFinished(attempt=state.attempt, outcome=RunOutcome.SUCCEEDED, detail=detail)
    new = done.to_new_event(id=records.event_id(run_id, "finished"), run_id=run_id, actor=ACTOR)
    store.append(records.run_stream(run_id), [new], ANY)
    state.finished = True


def remaining(run_id: str, state: RunState) -> list[Trial]:
    """The planned trials the log does not hold yet, in plan order."""
    return [t for t in state.config.trials() if records.tool_id(run_id, t.key) not in state.done]


def run_epochs(
    store: EventStore,
    run_id: str,
    state: RunState,
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
