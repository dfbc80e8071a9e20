"""One run lifecycle for every lab: stream names, deterministic ids, safe appends, folding.

A run is one stream, ``<prefix>-<run_id>``: ``run.RunStarted``, then the lab's
own events with ``run.Heartbeat`` among them, ``run.RunResumed`` when a new
attempt continues it, and ``run.RunFinished``. :class:`RunKind` says how one lab
names its streams and ids; :class:`RunLog` writes one run and folds it back.

Event ids are the UUIDv5 of the run id and the event's name within the run
(``uuid5(namespace, "run/part/part…")``). That is what makes a retry safe: an
append whose outcome is in doubt (``StoreUnavailable`` after the commit may have
happened) is sent again with the very same ids and bytes, and the store answers
``already_appended`` with the original positions instead of writing a second
copy. Each namespace is fixed forever: changing one would give stored runs
other ids than a resumed run computes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labledger.errors import StoreUnavailable, UsageError
from labledger.events import Event
from labledger.events.runs import Heartbeat, RunFinished, RunOutcome, RunResumed, RunStarted
from labledger.events.typed import Typed, typed
from labledger.store import ANY, NO_STREAM, AppendResult, EventStore, ExpectedVersion, NewEvent

TRIES = 3
"""How often an in-doubt append is sent before ``StoreUnavailable`` is raised."""
BACKOFF_S = 0.5
"""The wait before the n-th retry is ``n · BACKOFF_S``."""

Name = Sequence[object]
"""The parts an event is named by within its run (its id is derived from them)."""


@dataclass(frozen=True)
class RunKind:
    """How one lab names its runs.

    Attributes:
        prefix: a run's stream is ``<prefix>-<run_id>``.
        namespace: the UUIDv5 namespace of the lab's event ids.
        actor: the envelope's ``actor`` unless an event names its own.
        first_heartbeat_seq: the ``seq`` of an attempt's first heartbeat.
        exact: append at the exact next version; ``False`` appends with ``ANY``
            once the stream exists (the start is always ``NO_STREAM``).
    """

    prefix: str
    namespace: uuid.UUID
    actor: str | None = None
    first_heartbeat_seq: int = 0
    exact: bool = True

    def stream(self, run_id: str) -> str:
        """The stream of run ``run_id``: ``<prefix>-<run_id>``."""
        return f"{self.prefix}-{run_id}"

    def event_id(self, key: str, *parts: object) -> str:
        """The deterministic id of an event: ``uuid5`` of ``key`` and ``parts`` joined by ``/``.

        Args:
            key: what the event belongs to, usually the run id.
            parts: the event's name within it.

        Returns:
            The id as a string.
        """
        return str(uuid.uuid5(self.namespace, "/".join([key, *map(str, parts)])))


def append_retrying(
    store: EventStore, stream: str, events: Sequence[NewEvent], expected: ExpectedVersion
) -> AppendResult:
    """Append ``events``, sending the same batch again while the outcome is in doubt.

    Args:
        store: the ledger.
        stream: the stream to append to.
        events: the batch; its ids must be deterministic for a retry to be safe.
        expected: the stream version the batch was planned against.

    Returns:
        Where the batch landed; ``already_appended`` when an earlier try had committed.

    Raises:
        StoreUnavailable: still in doubt after :data:`TRIES` tries.
        WrongExpectedVersion: another writer appended to the stream.
    """
    for attempt in range(TRIES):
        try:
            return store.append(stream, events, expected)
        except StoreUnavailable:
            if attempt == TRIES - 1:
                raise
            time.sleep(BACKOFF_S * (attempt + 1))
    raise AssertionError("unreachable")  # the loop returns or raises


class StreamWriter:
    """Appends to one stream at the version it last saw, so a second writer is refused.

    Args:
        store: the ledger.
        stream: the stream written.
        version: the stream's current version (``-1``: it does not exist yet).
        last_position: the position of its last event (``-1``: none).
        exact: see :attr:`RunKind.exact`.
    """

    def __init__(
        self,
        store: EventStore,
        stream: str,
        *,
        version: int = -1,
        last_position: int = -1,
        exact: bool = True,
    ) -> None:
        self.store, self.stream, self.exact = store, stream, exact
        self.version, self.last_position = version, last_position

    def expected(self) -> ExpectedVersion:
        """The expected version of the next append."""
        if self.version < 0:
            return NO_STREAM
        return self.version if self.exact else ANY

    def append(self, events: Sequence[NewEvent]) -> AppendResult | None:
        """Append one batch atomically, retrying it while its outcome is in doubt.

        Args:
            events: the batch (nothing happens when it is empty).

        Returns:
            Where it landed (``None`` for an empty batch); the writer then
            stands at its last version and position.

        Raises:
            WrongExpectedVersion: another writer appended meanwhile.
            StoreUnavailable: the outcome stayed in doubt (see :func:`append_retrying`).
        """
        if not events:
            return None
        result = append_retrying(self.store, self.stream, events, self.expected())
        self.version, self.last_position = result.last_version, result.last_position
        return result


class RunLog(StreamWriter):
    """One run's stream: its lifecycle events, their ids, and the state folded from them.

    Attributes:
        run_id: the run.
        kind: how the lab names it.
        started: its ``run.RunStarted`` once written or read.
        finished: its ``run.RunFinished`` once written or read.
        attempt: the current attempt (0 until a resume).
        heartbeat_seq: the ``seq`` of the current attempt's last heartbeat
            (``kind.first_heartbeat_seq - 1`` before the first).
    """

    def __init__(self, store: EventStore, kind: RunKind, run_id: str) -> None:
        super().__init__(store, kind.stream(run_id), exact=kind.exact)
        self.kind, self.run_id = kind, run_id
        self.started: RunStarted | None = None
        self.finished: RunFinished | None = None
        self.attempt = 0
        self.heartbeat_seq = kind.first_heartbeat_seq - 1

    @classmethod
    def load(
        cls,
        store: EventStore,
        kind: RunKind,
        run_id: str,
        apply: Callable[[Typed[Event]], None] | None = None,
    ) -> RunLog:
        """Fold run ``run_id``'s stream, in order, into a log that continues it.

        Args:
            store: the ledger.
            kind: how the lab names the run.
            run_id: the run.
            apply: called with every event after the log folded it (the lab's own state).

        Returns:
            The log at the stream's end (``started`` is ``None`` for an empty stream).
        """
        log = cls(store, kind, run_id)
        for item in typed(store.read_stream(log.stream)):
            log.fold(item)
            if apply is not None:
                apply(item)
        return log

    def fold(self, item: Typed[Event]) -> None:
        """Apply one event of the run's stream to the lifecycle state."""
        self.version, self.last_position = item.record.stream_version, item.position
        match item.event:
            case RunStarted():
                self.started = item.event
            case RunResumed() if item.event.attempt > self.attempt:
                self.attempt = item.event.attempt
                self.heartbeat_seq = self.kind.first_heartbeat_seq - 1
            case Heartbeat() if item.event.attempt == self.attempt:
                self.heartbeat_seq = max(self.heartbeat_seq, item.event.seq)
            case RunFinished():
                self.finished = item.event
            case _:
                pass

    def event_id(self, *parts: object) -> str:
        """The id of this run's event named ``parts`` (see :meth:`RunKind.event_id`)."""
        return self.kind.event_id(self.run_id, *parts)

    def new(
        self,
        event: Event,
        *parts: object,
        actor: str | None = None,
        metadata: bytes = b"{}",
        causation_id: str | None = None,
    ) -> NewEvent:
        """``event`` ready to append: its id from ``parts``, this run's id, an actor.

        Args:
            event: the event.
            parts: its name within the run.
            actor: default ``kind.actor``.
            metadata: canonical JSON bytes.
            causation_id: the id of the event that caused this one.

        Returns:
            The encoded event (for any stream: the run's or a side stream of the lab's).
        """
        return event.to_new_event(
            id=self.event_id(*parts),
            run_id=self.run_id,
            actor=actor or self.kind.actor,
            metadata=metadata,
            causation_id=causation_id,
        )

    def start(
        self, started: RunStarted, *, then: Sequence[NewEvent] = (), name: Name = ("started",)
    ) -> AppendResult:
        """Write ``run.RunStarted`` (and ``then`` in the same batch) to a new stream.

        Args:
            started: the run's start.
            then: events that belong to the start (e.g. registrations).
            name: the start's name within the run.

        Returns:
            Where the batch landed; ``already_appended`` when this very start
            (same ids, same bytes) is in the log already.

        Raises:
            IdempotencyConflict: the run was started with other content.
            WrongExpectedVersion: the run's stream holds other events.
        """
        result = self._append([self.new(started, *name), *then])
        self.started = started
        return result

    def resume(
        self,
        *,
        checkpoint_id: str,
        checkpoint_position: int,
        checkpoint_sha256: str | None = None,
        name: Name | None = None,
    ) -> RunResumed:
        """Write ``run.RunResumed``: a new attempt continues from a checkpoint.

        Args:
            checkpoint_id: what the lab calls the checkpoint.
            checkpoint_position: the global position the new attempt continues after.
            checkpoint_sha256: the checkpoint blob, if there is one.
            name: default ``("resumed", <new attempt>)``.

        Returns:
            The event; the log then stands at the new attempt with no heartbeat yet.

        Raises:
            UsageError: the run was never started, or it finished.
            WrongExpectedVersion: another writer appended meanwhile.
        """
        if self.started is None or self.finished is not None:
            state = "was never started" if self.started is None else "finished"
            raise UsageError(f"run {self.run_id!r} {state}: it cannot be resumed")
        resumed = RunResumed(
            attempt=self.attempt + 1,
            resumes_attempt=self.attempt,
            checkpoint_id=checkpoint_id,
            checkpoint_position=checkpoint_position,
            checkpoint_sha256=checkpoint_sha256,
        )
        self._append([self.new(resumed, *(name or ("resumed", resumed.attempt)))])
        self.attempt, self.heartbeat_seq = resumed.attempt, self.kind.first_heartbeat_seq - 1
        return resumed

    def heartbeat(
        self, progress: str = "", *, name: Name | None = None, metadata: bytes = b"{}"
    ) -> NewEvent:
        """The next ``run.Heartbeat`` of the current attempt, for the caller's next batch.

        The sequence number is taken now, so a batch that fails is not beaten again
        with the same ``seq`` (its retry is the same batch, with the same id).

        Args:
            progress: a line for humans.
            name: default ``("heartbeat", attempt, seq)``.
            metadata: canonical JSON bytes (e.g. the checkpoint the beat stands for).

        Returns:
            The encoded heartbeat.
        """
        self.heartbeat_seq += 1
        beat = Heartbeat(attempt=self.attempt, seq=self.heartbeat_seq, progress=progress)
        parts = name or ("heartbeat", self.attempt, self.heartbeat_seq)
        return self.new(beat, *parts, metadata=metadata)

    def finish(
        self,
        detail: str,
        *,
        outcome: RunOutcome = RunOutcome.SUCCEEDED,
        before: Sequence[NewEvent] = (),
        name: Name = ("finished",),
    ) -> AppendResult | None:
        """Write ``run.RunFinished`` of the current attempt, after ``before`` in one batch.

        Args:
            detail: a line for humans.
            outcome: how the run ended.
            before: the run's closing events.
            name: the finish's name within the run.

        Returns:
            Where the batch landed, or ``None`` when the run had finished already:
            then nothing is appended, not even ``before``.

        Raises:
            WrongExpectedVersion: another writer appended meanwhile.
        """
        if self.finished is not None:
            return None
        finished = RunFinished(attempt=self.attempt, outcome=outcome, detail=detail)
        result = self._append([*before, self.new(finished, *name)])
        self.finished = finished
        return result

    def _append(self, events: list[NewEvent]) -> AppendResult:
        result = self.append(events)
        assert result is not None  # never empty: the lifecycle event is in it
        return result


__all__ = ["RunKind", "RunLog", "StreamWriter", "append_retrying"]
