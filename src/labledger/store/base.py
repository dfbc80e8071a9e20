"""The contract of the log: records, expected versions, and the store API.

Guarantees (DESIGN §3), each checked by the conformance suite in
``labledger.testing``:

1. Append-only: the database refuses UPDATE/DELETE of events (triggers).
2. An append to a stream is atomic and checked against an expected version;
   a conflict writes nothing and carries the actual version.
3. Idempotent ids: the same ids with the same content return the original
   positions (``already_appended``); the same id with other content raises.
4. Global positions are gap-free and strictly increasing in commit order.
5. ``append`` returns only after a durable commit.
6. Every record carries a checksum of all its stored fields and a hash-chain
   link; ``verify`` names the first bad position.
8. Envelope: id, stream, stream_version, position, type, schema_version,
   recorded_at (UTC), correlation_id, causation_id, run_id, actor.

Gate hooks: the small hook through which typed validation and command
security plug into append. The store knows nothing of event classes or
keys. A :class:`Gate` given to
``open_store`` sees every event before the write transaction (to validate
and canonicalise it, and to say whether it is a signed command), and builds
the rejection record when a command is refused. What needs the database —
freshness against the commit clock and the nonce ledger — the store checks
inside the append transaction, so a nonce replayed from two processes at
once is admitted exactly once.
"""

from __future__ import annotations

import abc
import enum
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from labledger.store.dialects.base import AppendWaiter
    from labledger.store.planner import Outcome, Request

_json_encode = msgspec.json.Encoder(order="sorted").encode

MAX_STREAM_LENGTH = 256
MAX_TYPE_LENGTH = 128


class StreamState(enum.Enum):
    """Expected-version conditions that are not an exact version."""

    ANY = "any"
    NO_STREAM = "no_stream"
    EXISTS = "exists"

    def __str__(self) -> str:
        return self.value


ANY = StreamState.ANY
NO_STREAM = StreamState.NO_STREAM
EXISTS = StreamState.EXISTS

ExpectedVersion = int | StreamState
"""Either an exact stream version (0-based; the first event is version 0) or a StreamState."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event on its way into the log.

    ``data`` and ``metadata`` are the exact bytes to store (canonical JSON of an
    object); use :meth:`from_json` to build them from Python objects.
    """

    type: str
    data: bytes
    id: str = msgspec.field(default_factory=lambda: str(uuid.uuid4()))
    metadata: bytes = b"{}"
    schema_version: int = 1
    correlation_id: str | None = None
    causation_id: str | None = None
    run_id: str | None = None
    actor: str | None = None
    recorded_at_us: int | None = None
    """Only for imports of historical events: keep their original commit time."""

    @classmethod
    def from_json(
        cls,
        type: str,
        data: Any,
        *,
        id: str | uuid.UUID | None = None,
        metadata: Any = None,
        **envelope: Any,
    ) -> NewEvent:
        """Build an event from JSON-compatible objects, encoded canonically (sorted keys)."""
        return cls(
            type=type,
            data=_json_encode(data),
            id=str(uuid.UUID(str(id))) if id is not None else str(uuid.uuid4()),
            metadata=_json_encode(metadata if metadata is not None else {}),
            **envelope,
        )


@runtime_checkable
class SupportsNewEvent(Protocol):
    """Anything the store can append: typed events convert themselves (events layer)."""

    def to_new_event(self) -> NewEvent: ...


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored, with its envelope."""

    position: int
    stream: str
    stream_version: int
    id: str
    type: str
    schema_version: int
    recorded_at_us: int
    correlation_id: str | None
    causation_id: str | None
    run_id: str | None
    actor: str | None
    data: bytes
    metadata: bytes

    @property
    def recorded_at(self) -> datetime:
        """Commit-time wall clock of the appending process, UTC."""
        return datetime.fromtimestamp(self.recorded_at_us / 1_000_000, tz=UTC)


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """Where a batch landed. ``already_appended`` means nothing was written this time."""

    stream: str
    first_position: int
    last_position: int
    first_version: int
    last_version: int
    already_appended: bool = False


class StreamAppend(msgspec.Struct, frozen=True):
    """One stream's part of a (possibly multi-stream) atomic append."""

    stream: str
    events: Sequence[NewEvent | SupportsNewEvent]
    expected_version: ExpectedVersion = ANY


class StreamInfo(msgspec.Struct, frozen=True, kw_only=True):
    stream: str
    version: int
    last_position: int


class Problem(enum.Enum):
    CHECKSUM = "checksum"
    CHAIN = "chain"
    GAP = "gap"
    ORDER = "order"
    INDEX = "index"
    ANCHOR = "anchor"


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """Result of a full integrity scan."""

    ok: bool
    head: int
    events_checked: int
    head_hash: str
    first_bad_position: int | None = None
    problem: Problem | None = None
    message: str = "ok"


class EventStore(abc.ABC):
    """The append-only log. Open one with :func:`labledger.store.open_store`."""

    url: str

    @abc.abstractmethod
    def append(
        self,
        stream: str,
        events: Sequence[NewEvent | SupportsNewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append a batch to one stream, atomically, after a durable commit.

        Args:
            stream: the stream name (1–256 characters, no NUL).
            events: the batch, written in order with consecutive stream versions.
            expected_version: an exact version, ``ANY``, ``NO_STREAM`` or ``EXISTS``.

        Returns:
            The positions and versions of the batch; ``already_appended`` is
            true when every id was already stored with the same content.

        Raises:
            WrongExpectedVersion: the stream is elsewhere; nothing written.
            IdempotencyConflict: an id is stored with other content.
            InvalidEvent: a malformed event; nothing written.
            StoreUnavailable: the commit could not be made durable.
        """

    @abc.abstractmethod
    def append_many(self, parts: Sequence[StreamAppend]) -> list[AppendResult]:
        """Append to several streams in one transaction: all parts land or none."""

    @abc.abstractmethod
    def read_stream(
        self, stream: str, from_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        """Events of one stream with version >= ``from_version``, in version order."""

    @abc.abstractmethod
    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        """Every event with position >= ``from_position``, in position order.

        Streams in keyset pages of ``batch_size``: memory stays constant however
        long the log. Events committed while iterating are included.
        """

    @abc.abstractmethod
    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are already in the log (for imports that skip what is there)."""

    @abc.abstractmethod
    def head(self) -> int:
        """The last position in the log (0 when empty)."""

    @abc.abstractmethod
    def stream_version(self, stream: str) -> int:
        """The stream's last version, or -1 when it has no events."""

    @abc.abstractmethod
    def streams(self, prefix: str = "") -> list[StreamInfo]:
        """Streams whose name starts with ``prefix`` (a literal prefix, not a pattern)."""

    @abc.abstractmethod
    def put_blob(self, data: bytes) -> str:
        """Store immutable bytes; returns their SHA-256 (hex). Storing twice is a no-op."""

    @abc.abstractmethod
    def get_blob(self, sha256: str) -> bytes:
        """Bytes of a blob, verified against their hash.

        Raises:
            BlobNotFound: nothing stored under that hash.
            CorruptionDetected: the stored bytes no longer hash to ``sha256``.
        """

    @abc.abstractmethod
    def nonce_stats(self) -> NonceStats:
        """Size, expiries, evictions and horizon of the nonce ledger (signed commands)."""

    @abc.abstractmethod
    def verify(self) -> VerifyReport:
        """Scan the whole log: checksums, chain, gaps, stream order and index."""

    @abc.abstractmethod
    def waiter(self) -> AppendWaiter:
        """A wake-up source for following live appends (see ``store.subscribe``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""

    # -- what the layers above need beside the log ------------------------------

    @abc.abstractmethod
    def read(self, *, snapshot: bool = False) -> AbstractContextManager[Connection]:
        """A read transaction on the database holding the log (read models live there).

        Args:
            snapshot: every statement sees one snapshot (a multi-statement read).

        Raises:
            StoreUnavailable: the database cannot be reached (driver errors translated).
        """

    @abc.abstractmethod
    def write(self) -> AbstractContextManager[Connection]:
        """A write transaction beside the log (read models, checkpoints), serialized
        with other writers; commits when the block ends without an exception."""

    @abc.abstractmethod
    def schema_revision(self) -> str | None:
        """The schema revision the database records (None: no schema)."""

    @property
    @abc.abstractmethod
    def keeps_anchor(self) -> bool:
        """Whether this store keeps a head anchor (``verify`` checks the log against it)."""

    @abc.abstractmethod
    def anchor_status(self) -> AnchorStatus | None:
        """The head anchor as stored, and why the log disagrees with it (None: none kept).

        Raises:
            AnchorMismatch: the anchor file itself fails its MAC.
        """

    @abc.abstractmethod
    def accept_anchor(self) -> int:
        """An operator accepts the log as it is: the anchor moves to the head (returned).

        Raises:
            StoreUnavailable: the store keeps no anchor.
        """

    @abc.abstractmethod
    def copy_into(self, path: Path) -> tuple[str, dict[str, Any]]:
        """Copy the live store consistently into the file ``path`` (writers carry on).

        Returns:
            The backend kind, and the copy's head, head hash, counts and revision.
        """

    @abc.abstractmethod
    def disk(self) -> DiskUsage:
        """Where the log lives and how much room is left there."""

    @abc.abstractmethod
    def commit_requests(self, requests: Sequence[Request]) -> list[Outcome]:
        """Commit validated requests in one durable transaction; one outcome each.

        The building block of plain appends and group commit: a request's
        conflict or bad event becomes its own outcome and never fails the others.
        """

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommandClaim(msgspec.Struct, frozen=True, kw_only=True):
    """What a signed command asks of the store, and any problem found before the commit."""

    nonce: str | None
    key_id: str | None
    issued_at_us: int
    window_us: int
    refusal: tuple[str, str] | None = None
    """(reason, detail) when the command is already known to be refused (bad signature…)."""


class Gate(Protocol):
    """Validation and command security, supplied by the layers above the store."""

    def prepare(
        self, event: NewEvent, *, typed: bool = False
    ) -> tuple[NewEvent, CommandClaim | None]:
        """Validate (and canonicalise) one event before the transaction.

        ``typed`` says the event was encoded from a typed object (``to_new_event``),
        which validated it already; a gate may skip re-validating its payload.
        Otherwise the gate owns checking that data and metadata are each one
        JSON object: the store only checks they are bytes when a gate is set.

        Returns:
            The event to store, and a claim when it is a signed command.

        Raises:
            InvalidEvent: the event must not reach the log at all.
        """
        ...

    def rejection(
        self, event: NewEvent, claim: CommandClaim, reason: str, detail: str
    ) -> tuple[str, NewEvent]:
        """The (stream, record) that documents a refused command."""
        ...

    def admit(self, stream: str, event: NewEvent) -> None:
        """Refuse an event this stream may not receive from this caller (reserved names).

        Raises:
            LabledgerError: the append must not happen (nothing is written).
        """
        ...


class AnchorStatus(msgspec.Struct, frozen=True, kw_only=True):
    """The head anchor kept beside a store (see ``integrity.HeadAnchor``)."""

    path: str
    position: int | None
    chain: str | None
    problem: str | None


class DiskUsage(msgspec.Struct, frozen=True, kw_only=True):
    """Where the log lives: free bytes on a local disk, or the database's size on a server."""

    where: str
    free_bytes: int | None = None
    database_bytes: int | None = None


class NonceStats(msgspec.Struct, frozen=True, kw_only=True):
    size: int
    expired: int
    evicted: int
    horizon_us: int
