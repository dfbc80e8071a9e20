"""One exception tree for labledger.

Every error a user can meet derives from :class:`LabledgerError` and says what
to do next. Driver and SQLAlchemy exceptions are translated in one place per
store dialect (``store/dialects/sqlite.py``, ``store/dialects/postgres.py``), always chained
with ``raise ... from``.

Each class carries what it means to a caller as two class attributes, read by
the CLI (``exit_code``) and the HTTP API (``http_status``); a subclass inherits
both unless it says otherwise. Exit codes (stable; scripts rely on them): 0 ok;
1 integrity failure; 2 usage or bad input; 3 expected-version conflict; 4
rejected (validation or security); 5 store unavailable or not initialised.
"""

from __future__ import annotations

from typing import ClassVar


class LabledgerError(Exception):
    """Root of every labledger error."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 500


class UsageError(LabledgerError, ValueError):
    """The caller asked for something malformed (bad stream name, bad input)."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 422


class MissingExtra(UsageError):
    """An optional extra is not installed; the message gives the ``pip install`` line."""

    def __init__(self, what: str, extra: str, modules: list[str]) -> None:
        self.extra = extra
        self.modules = modules
        super().__init__(
            f"{what} needs the '{extra}' extra ({', '.join(modules)} not installed): "
            f"pip install 'labledger[{extra}]'"
        )


class WrongExpectedVersion(LabledgerError):
    """The stream is not at the version the caller expected; nothing was written."""

    exit_code: ClassVar[int] = 3
    http_status: ClassVar[int] = 409

    def __init__(self, stream: str, expected: object, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual < 0 else f"version {actual}"
        super().__init__(
            f"stream {stream!r} is at {shown}, expected {expected}; nothing was written. "
            "Re-read the stream and retry with the actual version."
        )


class IdempotencyConflict(LabledgerError):
    """An event id already exists with other content (or in another place)."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 422

    def __init__(self, event_id: str, detail: str) -> None:
        self.event_id = event_id
        super().__init__(
            f"event id {event_id} was already appended with {detail}; nothing was written. "
            "Use a fresh id for a different event."
        )


class CorruptionDetected(LabledgerError):
    """Stored bytes do not match their checksum or hash chain."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, position: int | None = None) -> None:
        self.position = position
        super().__init__(message)


class SchemaNotInitialized(LabledgerError):
    """The database has no labledger schema, or an older/newer revision than this code."""

    exit_code: ClassVar[int] = 5
    http_status: ClassVar[int] = 503

    def __init__(self, url: str, found: str | None, wanted: str) -> None:
        self.found = found
        self.wanted = wanted
        state = "has no labledger schema" if found is None else f"is at schema revision {found}"
        super().__init__(
            f"the store at {url} {state}; this labledger needs revision {wanted}. "
            f"Run: labledger --db '{url}' init"
        )


class StoreUnavailable(LabledgerError, ConnectionError):
    """The store cannot be written or reached: disk full, read-only file, server down."""

    exit_code: ClassVar[int] = 5
    http_status: ClassVar[int] = 503


class DatabaseMissing(StoreUnavailable):
    """The server is up but has no database of that name; ``labledger init`` creates it."""


class StoreBusy(StoreUnavailable):
    """Another writer held the store longer than the busy timeout."""


class BlobNotFound(LabledgerError, KeyError):
    """No blob with that SHA-256 is stored."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 404

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "blob not found"


class EventDecodeError(LabledgerError, ValueError):
    """Stored or submitted event bytes do not decode into their declared type."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 422

    def __init__(
        self,
        message: str,
        *,
        type_name: str | None = None,
        stream: str | None = None,
        position: int | None = None,
    ) -> None:
        self.type_name = type_name
        self.stream = stream
        self.position = position
        where = []
        if type_name is not None:
            where.append(f"type {type_name!r}")
        if stream is not None:
            where.append(f"stream {stream!r}")
        if position is not None:
            where.append(f"position {position}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class UnknownEventType(EventDecodeError):
    """No class is registered for this (type, schema_version)."""


class InvalidEvent(LabledgerError, ValueError):
    """An event was refused before it reached the log (validation, limits, strict mode)."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 422


class CommandRefused(LabledgerError):
    """A signed command failed verification; the gate recorded why instead.

    The record it left is the event ``security.CommandRejected``; the error has
    its own name so that the two are never confused (issue #13).
    """

    exit_code: ClassVar[int] = 4
    http_status: ClassVar[int] = 403

    def __init__(self, reason: str, detail: str = "", position: int | None = None) -> None:
        self.reason = reason
        self.position = position
        msg = f"command rejected: {reason}"
        if detail:
            msg += f" ({detail})"
        if position is not None:
            msg += f"; the rejection is recorded at position {position}"
        super().__init__(msg)


class ProjectionError(LabledgerError):
    """A projection could not apply, rebuild or report."""


class ReservedName(LabledgerError):
    """An append wrote into a namespace only the gate may write (``security.*``, the gate's
    streams, or a run's lifecycle on behalf of another run). Nothing was written (issue #18).
    """

    exit_code: ClassVar[int] = 4
    http_status: ClassVar[int] = 403
