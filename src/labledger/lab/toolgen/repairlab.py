"""RepairLab: an anyio worker that answers ToolGen's handoffs from the log.

It follows ``toolgen.HandoffRequested`` with :func:`labledger.store.subscribe`
(catch up, then live appends). Per handoff it searches the edit candidates of
``repair.candidates`` — a pure function of the failing code and its test
output, both blobs the handoff names — one **attempt** per candidate, under a
budget of attempts and of time (the sum of the attempts' recorded durations).
A handoff is *answered* when its stream ``repairlab-<handoff>`` holds a
``RepairSucceeded``, or when the candidates or either budget ran out: that can
be read from the stream, so on (re)start the worker continues where it
stopped — an attempt started but never concluded (the worker died) is run
again under the same number and candidate; its ``RepairAttempted`` is not
written twice. No side files, no queue directory.

Per attempt: ``RepairAttempted`` (its ``agent`` is the edit, ``operator@site``),
then either ``RepairFailed``, or ``RepairSucceeded`` + ``ChallengerEntered``
(lineage ``repairlab_fixed``, parent and handoff) + the challenger's
``ToolEvaluated`` in one batch, so the repaired tool enters the leaderboard
with its lineage atomically. Every append names the stream version it expects,
so two workers racing on one handoff cannot both record an attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import anyio
import anyio.to_thread
import msgspec

from labledger.events import Event
from labledger.events.toolgen import (
    ChallengerEntered,
    GenerationPlanned,
    Genome,
    HandoffRequested,
    Lineage,
    RepairAttempted,
    RepairFailed,
    RepairFailure,
    RepairSucceeded,
)
from labledger.events.typed import decode_record, typed
from labledger.lab.runs import StreamWriter
from labledger.lab.toolgen import records, repair
from labledger.lab.toolgen.evaluate import DEFAULT_TIMED_RUNS, Measurement
from labledger.lab.toolgen.specs import Spec, get_spec
from labledger.store import EventStore, RecordedEvent
from labledger.store.subscribe import subscribe

ACTOR = "repairlab"


class RepairState(msgspec.Struct, kw_only=True):
    """One handoff's progress, read from its repair stream."""

    version: int = -1
    started: int = 0
    """The highest attempt number started."""
    concluded: int = 0
    """The highest attempt number with an outcome."""
    succeeded: bool = False
    spent_s: float = 0.0
    """The recorded durations of the concluded attempts, summed (the time budget's use)."""

    def answered(self, candidates: int, time_budget_s: float) -> bool:
        """Repaired, or out of candidates, or out of time."""
        return self.succeeded or self.concluded >= candidates or self.spent_s >= time_budget_s


def read_repair_state(store: EventStore, handoff_id: str) -> RepairState:
    """The handoff's repair progress, from ``repairlab-<handoff>``."""
    state = RepairState()
    for record in store.read_stream(records.repair_stream(handoff_id)):
        event = decode_record(record).event
        state.version = record.stream_version
        if isinstance(event, RepairAttempted):
            state.started = max(state.started, event.attempt)
        elif isinstance(event, RepairSucceeded | RepairFailed):
            state.concluded = max(state.concluded, event.attempt)
            state.succeeded = state.succeeded or isinstance(event, RepairSucceeded)
            state.spent_s += event.duration_s
    return state


class RepairLab:
    """The worker. ``answered`` holds the handoffs it has seen answered (by anyone).

    Args:
        store: the ledger.
        run_id: only handoffs of this run (``None``: every run's).
        timeout_s: the time budget of one handoff, all its attempts together.
        max_attempts: the attempt budget of one handoff.
        timed_runs: benchmark repetitions when a challenger is evaluated.
        log: where one line per attempt goes (e.g. stderr).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        run_id: str | None = None,
        timeout_s: float = 60.0,
        max_attempts: int = 24,
        timed_runs: int = DEFAULT_TIMED_RUNS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.run_id = store, run_id
        self.timeout_s, self.timed_runs = timeout_s, timed_runs
        self.max_attempts = max_attempts
        self.log = log or (lambda _line: None)
        self.answered: set[str] = set()
        self.repaired: set[str] = set()

    def _wanted(self, record: RecordedEvent) -> bool:
        if self.run_id is None:
            return record.stream.startswith("toolgen-")
        return record.stream == records.trials_stream(self.run_id)

    async def run(self) -> None:
        """Answer handoffs forever (cancel the enclosing scope to stop)."""
        prefix = "toolgen-" if self.run_id is None else records.trials_stream(self.run_id)
        start = 1
        if self.run_id is not None:  # nothing of the run precedes its RunStarted
            first = self.store.read_stream(records.run_stream(self.run_id), limit=1)
            start = first[0].position if first else 1
        async for record in subscribe(
            self.store, start, types={HandoffRequested.TYPE}, stream_prefix=prefix
        ):
            if self._wanted(record):
                await anyio.to_thread.run_sync(self.answer, record)

    def answer(self, record: RecordedEvent) -> None:
        """Work on one handoff until it is answered (blocking: subprocesses, appends)."""
        handoff = decode_record(record).event
        assert isinstance(handoff, HandoffRequested)
        job = self._job(record, handoff)
        state = read_repair_state(self.store, handoff.handoff_id)
        while not state.answered(len(job.candidates), self.timeout_s):
            self._attempt(record, handoff, job, state)
        if state.succeeded:
            self.repaired.add(handoff.handoff_id)
        self.answered.add(handoff.handoff_id)

    def _job(self, record: RecordedEvent, handoff: HandoffRequested) -> _Job:
        spec = get_spec(PurePosixPath(handoff.spec_path).stem)
        code = self.store.get_blob(handoff.bundle_sha256 or "").decode()
        report: dict[str, Any] = {}
        if handoff.report_sha256 is not None:
            report = msgspec.json.decode(self.store.get_blob(handoff.report_sha256))
        found = repair.candidates(code, handoff.impl_style, report)[: self.max_attempts]
        genome = self._parent_genome(record.stream, handoff)
        return _Job(spec=spec, candidates=found, genome=genome)

    def _parent_genome(self, stream: str, handoff: HandoffRequested) -> Genome:
        """The handed-off tool's genome, from its generation in the trials stream
        (a log without generations: the plain template of its style)."""
        for item in typed(self.store.read_stream(stream)):
            if isinstance(item.event, GenerationPlanned):
                for m in item.event.members:
                    if m.tool_id == handoff.tool_id:
                        return m.genome
        return Genome(impl_style=handoff.impl_style, anneal_gene=1.0, mutations=[])

    def _append(
        self,
        handoff: HandoffRequested,
        record: RecordedEvent,
        state: RepairState,
        events: list[tuple[str, Event]],
        attempt: int,
    ) -> None:
        new = [
            event.to_new_event(
                id=records.REPAIRS.event_id(handoff.handoff_id, attempt, kind),
                run_id=record.run_id,
                causation_id=record.id,
                actor=ACTOR,
            )
            for kind, event in events
        ]
        stream = StreamWriter(
            self.store, records.repair_stream(handoff.handoff_id), version=state.version
        )
        stream.append(new)
        state.version = stream.version

    def _attempt(
        self, record: RecordedEvent, handoff: HandoffRequested, job: _Job, state: RepairState
    ) -> None:
        number = state.concluded + 1
        candidate = job.candidates[number - 1]
        if state.started < number:
            started = RepairAttempted(
                handoff_id=handoff.handoff_id,
                attempt=number,
                agent=candidate.how,
                timeout_s=self.timeout_s,
            )
            self._append(handoff, record, state, [("attempted", started)], number)
            state.started = number
        t0 = time.monotonic()
        challenger = records.challenger_id(handoff.tool_id, number)
        outcome = repair.attempt(
            candidate,
            job.spec,
            handoff.epoch,
            seeds=records.hash_seeds(challenger),
            timed_runs=self.timed_runs,
        )
        duration = time.monotonic() - t0
        events: list[tuple[str, Event]]
        if outcome.measurement is None:
            failed = RepairFailed(
                handoff_id=handoff.handoff_id,
                attempt=number,
                failure=RepairFailure.TESTS_FAILED,
                exit_code=None,
                duration_s=duration,
                detail=outcome.detail,
            )
            events = [("failed", failed)]
            state.spent_s += duration
        else:
            events = self._success(
                handoff, number, candidate, outcome.measurement, job, challenger, duration
            )
            self.log(
                f"repairlab: {handoff.handoff_id} attempt {number}: repaired "
                f"({candidate.how}) -> challenger {challenger}"
            )
        self._append(handoff, record, state, events, number)
        state.concluded = number
        state.succeeded = outcome.measurement is not None
        if not state.succeeded and state.answered(len(job.candidates), self.timeout_s):
            self.log(f"repairlab: {handoff.handoff_id}: not repaired after {number} attempts")

    def _success(
        self,
        handoff: HandoffRequested,
        number: int,
        fixed: repair.Candidate,
        measured: Measurement,
        job: _Job,
        challenger: str,
        duration: float,
    ) -> list[tuple[str, Event]]:
        code_sha = self.store.put_blob(fixed.code.encode())
        succeeded = RepairSucceeded(
            handoff_id=handoff.handoff_id,
            attempt=number,
            repaired_code_sha256=code_sha,
            duration_s=duration,
        )
        entered = ChallengerEntered(
            tool_id=challenger,
            spec_id=job.spec.id,
            impl_style=fixed.style,
            epoch=handoff.epoch,
            lineage=Lineage.REPAIRLAB_FIXED,
            parent_tool_id=handoff.tool_id,
            handoff_id=handoff.handoff_id,
            code_sha256=code_sha,
        )
        genome = msgspec.structs.replace(job.genome, mutations=[*job.genome.mutations, fixed.how])
        scored = records.evaluated(
            challenger,
            job.spec,
            genome,
            handoff.epoch,
            fixed.code,
            measured,
        )
        return [("succeeded", succeeded), ("challenger", entered), ("evaluated", scored)]


@dataclass(frozen=True)
class _Job:
    """What one handoff's search works from."""

    spec: Spec
    candidates: list[repair.Candidate]
    genome: Genome
