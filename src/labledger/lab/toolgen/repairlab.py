"""RepairLab: an anyio worker that answers ToolGen's handoffs from the log.

It follows ``toolgen.HandoffRequested`` with :func:`labledger.store.subscribe`
(catch up, then live appends). Its checkpoint is the log itself: a handoff is
*answered* when its stream ``repairlab-<handoff>`` holds a
``RepairSucceeded``, or a ``RepairFailed`` of the last agent. On (re)start the
worker reads each handoff's stream and continues where it stopped — an
attempt started but never concluded (the worker died) is run again under the
same attempt number; its ``RepairAttempted`` is not written twice. No side
files, no queue directory.

Per attempt (bounded in time, see ``repair.attempt``): ``RepairAttempted``,
then either ``RepairFailed``, or ``RepairSucceeded`` + ``ChallengerEntered``
(lineage ``repairlab_fixed``, parent and handoff) + the challenger's
``ToolEvaluated`` in one batch, so the repaired tool enters the leaderboard
with its lineage atomically. Every append names the stream version it expects,
so two workers racing on one handoff cannot both record an attempt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePosixPath

import anyio
import anyio.to_thread
import msgspec

from labledger.events import Event
from labledger.events.toolgen import (
    ChallengerEntered,
    HandoffRequested,
    Lineage,
    RepairAttempted,
    RepairFailed,
    RepairFailure,
    RepairSucceeded,
)
from labledger.events.typed import decode_record
from labledger.lab.runs import StreamWriter
from labledger.lab.toolgen import records, repair
from labledger.lab.toolgen.evaluate import DEFAULT_TIMED_RUNS
from labledger.lab.toolgen.specs import get_spec
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

    @property
    def answered(self) -> bool:
        """Repaired, or every agent tried and failed."""
        return self.succeeded or self.concluded >= len(repair.AGENTS)


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
    return state


class RepairLab:
    """The worker. ``answered`` holds the handoffs it has seen answered (by anyone).

    Args:
        store: the ledger.
        run_id: only handoffs of this run (``None``: every run's).
        timeout_s: the time bound of one repair attempt.
        timed_runs: benchmark repetitions when a challenger is evaluated.
        log: where one line per attempt goes (e.g. stderr).
    """

    def __init__(
        self,
        store: EventStore,
        *,
        run_id: str | None = None,
        timeout_s: float = 60.0,
        timed_runs: int = DEFAULT_TIMED_RUNS,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.run_id = store, run_id
        self.timeout_s, self.timed_runs = timeout_s, timed_runs
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
        state = read_repair_state(self.store, handoff.handoff_id)
        while not state.answered:
            self._attempt(record, handoff, state)
        if state.succeeded:
            self.repaired.add(handoff.handoff_id)
        self.answered.add(handoff.handoff_id)

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
        self, record: RecordedEvent, handoff: HandoffRequested, state: RepairState
    ) -> None:
        number = state.concluded + 1
        agent = repair.AGENTS[number - 1]
        if state.started < number:
            started = RepairAttempted(
                handoff_id=handoff.handoff_id, attempt=number, agent=agent, timeout_s=self.timeout_s
            )
            self._append(handoff, record, state, [("attempted", started)], number)
            state.started = number
        t0 = time.monotonic()
        spec = get_spec(PurePosixPath(handoff.spec_path).stem)
        code = self.store.get_blob(handoff.bundle_sha256 or "").decode()
        challenger = records.challenger_id(handoff.tool_id, number)
        outcome = repair.attempt(
            agent,
            code,
            spec,
            handoff.impl_style,
            handoff.epoch,
            seeds=records.hash_seeds(challenger),
            timed_runs=self.timed_runs,
            timeout_s=self.timeout_s,
        )
        log_sha = self.store.put_blob("\n".join(outcome.log).encode() + b"\n")
        duration = time.monotonic() - t0
        events: list[tuple[str, Event]]
        if outcome.repaired is None or outcome.measurement is None:
            failure = outcome.failure or RepairFailure.TESTS_FAILED
            failed = RepairFailed(
                handoff_id=handoff.handoff_id,
                attempt=number,
                failure=failure,
                exit_code=None,
                duration_s=duration,
                detail=outcome.log[-1],
                log_sha256=log_sha,
            )
            events = [("failed", failed)]
            self.log(f"repairlab: {handoff.handoff_id} attempt {number} ({agent}): {failure}")
        else:
            events = self._success(handoff, number, outcome, challenger, duration, log_sha)
            self.log(
                f"repairlab: {handoff.handoff_id} attempt {number} ({agent}): repaired "
                f"({outcome.repaired.how}) -> challenger {challenger}"
            )
        self._append(handoff, record, state, events, number)
        state.concluded = number
        state.succeeded = outcome.repaired is not None

    def _success(
        self,
        handoff: HandoffRequested,
        number: int,
        outcome: repair.Outcome,
        challenger: str,
        duration: float,
        log_sha: str,
    ) -> list[tuple[str, Event]]:
        assert outcome.repaired is not None and outcome.measurement is not None
        fixed = outcome.repaired
        code_sha = self.store.put_blob(fixed.code.encode())
        spec = get_spec(PurePosixPath(handoff.spec_path).stem)
        succeeded = RepairSucceeded(
            handoff_id=handoff.handoff_id,
            attempt=number,
            repaired_code_sha256=code_sha,
            duration_s=duration,
            log_sha256=log_sha,
        )
        entered = ChallengerEntered(
            tool_id=challenger,
            spec_id=spec.id,
            impl_style=fixed.style,
            epoch=handoff.epoch,
            lineage=Lineage.REPAIRLAB_FIXED,
            parent_tool_id=handoff.tool_id,
            handoff_id=handoff.handoff_id,
            code_sha256=code_sha,
        )
        scored = records.evaluated(
            challenger, spec, fixed.style, handoff.epoch, fixed.code, outcome.measurement
        )
        return [("succeeded", succeeded), ("challenger", entered), ("evaluated", scored)]
