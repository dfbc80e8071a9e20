"""The SQLAlchemy Core implementation of the log, shared by both backends."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import msgspec
from sqlalchemy import Connection, bindparam, text
from sqlalchemy import exc as sa_exc

from labledger.errors import (
    BlobNotFound,
    CorruptionDetected,
    InvalidEvent,
    LabledgerError,
    SchemaNotInitialized,
    StoreUnavailable,
)
from labledger.store import _writer, integrity, migrations, nonces
from labledger.store.base import (
    ANY,
    AppendResult,
    EventStore,
    ExpectedVersion,
    Gate,
    NewEvent,
    NonceStats,
    Problem,
    RecordedEvent,
    StreamAppend,
    StreamInfo,
    SupportsNewEvent,
    VerifyReport,
)
from labledger.store.dialects.base import AppendWaiter, Dialect, dialect_for
from labledger.store.group_commit import GroupCommitter
from labledger.store.integrity import AnchorMismatch, HeadAnchor, verify_log
from labledger.store.planner import Outcome, Request, normalize_part
from labledger.store.schema import READ_COLUMNS, to_recorded

T = TypeVar("T")

_READ_ALL = f"SELECT {READ_COLUMNS} FROM ll_events WHERE position >= ? ORDER BY position LIMIT ?"
_READ_STREAM = text(
    f"SELECT {READ_COLUMNS} FROM ll_events WHERE stream = :s AND stream_version >= :v "
    "ORDER BY stream_version LIMIT :n"
)
_VERSION = text("SELECT version FROM ll_streams WHERE stream = :s")


class SqlEventStore(EventStore):
    """The log on SQLite or PostgreSQL. Thread-safe; one instance per process is enough."""

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        gate: Gate | None = None,
        clock: Callable[[], int] = time.time_ns,
        max_nonces: int = nonces.DEFAULT_MAX_NONCES,
        anchor: Path | bool | None = True,
    ) -> None:
        self.dialect: Dialect = dialect_for(url)
        self.url = url
        self.read_only = read_only
        self.gate = gate
        self.clock = clock
        self.max_nonces = max_nonces
        if not self.dialect.exists():
            raise SchemaNotInitialized(url, None, migrations.HEAD_REVISION)
        self.engine = self.dialect.create_engine(read_only=read_only)
        self._check_schema()
        self._group = GroupCommitter(self.commit_requests)
        self.anchor = self._open_anchor(anchor)
        self.anchor_problem = self._check_anchor()

    # -- plumbing ---------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate driver errors into labledger's, in one place."""
        try:
            yield
        except LabledgerError:
            raise
        except (sa_exc.SQLAlchemyError, OSError) as exc:
            mapped = self.dialect.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc
        except Exception as exc:
            mapped = self.dialect.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._errors(), self.engine.connect() as conn, conn.begin():
            return fn(conn)

    def _check_schema(self) -> None:
        with self._errors(), self.engine.connect() as conn:
            found = migrations.current_revision(conn)
        if found != migrations.HEAD_REVISION:
            self.engine.dispose()
            raise SchemaNotInitialized(self.url, found, migrations.HEAD_REVISION)

    def close(self) -> None:
        self.engine.dispose()
        if self.anchor is not None:
            self.anchor.close()

    # -- head anchor --------------------------------------------------------

    def _open_anchor(self, choice: Path | bool | None) -> HeadAnchor | None:
        env = os.environ.get(integrity.PATH_ENV)
        if choice is False or env == "off":
            return None
        path = choice if isinstance(choice, Path) else (
            Path(env) if env else self.dialect.anchor_path())  # fmt: skip
        if path is None:
            return None
        try:
            return HeadAnchor(path, create_key=not self.read_only)
        except OSError:
            return None  # read-only copy without its key: nothing to check against

    def _chain_at(self, position: int) -> bytes | None:
        row = self._read(
            lambda c: c.execute(
                text("SELECT chain FROM ll_events WHERE position = :p"), {"p": position}
            ).first()
        )
        return None if row is None else bytes(row[0])

    def _check_anchor(self) -> str | None:
        if self.anchor is None:
            return None
        try:
            state = self.anchor.read()
        except AnchorMismatch as exc:
            return str(exc)
        if state is None:
            return None
        return integrity.check(state, self.head(), self._chain_at(state.position))

    def accept_anchor(self) -> int:
        """An operator accepts the log as it is: the anchor moves to the current head."""
        if self.anchor is None:
            raise StoreUnavailable(f"{self.url} keeps no head anchor")
        head = self.head()
        self.anchor.reset(head, self._chain_at(head) or bytes(32))
        self.anchor_problem = None
        return head

    def waiter(self) -> AppendWaiter:
        return self.dialect.waiter(self.engine)

    # -- appending ----------------------------------------------------------

    def append(
        self,
        stream: str,
        events: Sequence[NewEvent | SupportsNewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        return self.append_many([StreamAppend(stream, list(events), expected_version)])[0]

    def append_many(self, parts: Sequence[StreamAppend]) -> list[AppendResult]:
        request = [normalize_part(p, self.gate) for p in parts]
        if not request:
            raise InvalidEvent("nothing to append")
        outcome = self._group.submit(request)
        if isinstance(outcome, LabledgerError):
            raise outcome
        return outcome

    def commit_requests(self, requests: Sequence[Request]) -> list[Outcome]:
        """Commit independent requests in one durable transaction; one outcome each.

        The building block of both plain appends and group commit: a request's
        conflict or bad event becomes its own outcome and never fails the others.
        """
        if self.read_only:
            raise StoreUnavailable(f"{self.url} is open read-only; nothing was written")
        if self.anchor_problem is not None:
            raise AnchorMismatch(f"appends are refused: {self.anchor_problem}")
        with self._errors():
            outcomes, head = _writer.commit(self, requests)
        if head is not None and self.anchor is not None:
            self.anchor.advance(*head)
        return outcomes

    # -- reading --------------------------------------------------------------

    def read_stream(
        self, stream: str, from_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        n = -1 if limit is None else limit
        if n == -1:
            n = 2**62
        return self._read(
            lambda c: [
                to_recorded(r)
                for r in c.execute(_READ_STREAM, {"s": stream, "v": from_version, "n": n})
            ]
        )

    def read_all(
        self, from_position: int = 0, *, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[RecordedEvent]:
        remaining = 2**62 if limit is None else limit
        position = max(from_position, 0)
        while remaining > 0:
            size = min(batch_size, remaining)
            page = self._read_page(position, size)
            yield from page
            if len(page) < size:
                return
            remaining -= len(page)
            position = page[-1].position + 1

    def _read_page(self, position: int, size: int) -> list[RecordedEvent]:
        with self._errors():
            rows = self.dialect.read_rows(self.engine, _READ_ALL, (position, size))
        return [to_recorded(r) for r in rows]

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        sql = text("SELECT event_id FROM ll_events WHERE event_id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )

        def lookup(conn: Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(ids), 2000):
                found.update(r[0] for r in conn.execute(sql, {"ids": list(ids[i : i + 2000])}))
            return found

        return self._read(lookup)

    def head(self) -> int:
        return self._read(
            lambda c: int(
                c.execute(text("SELECT COALESCE(MAX(position), 0) FROM ll_events")).scalar_one()
            )
        )

    def stream_version(self, stream: str) -> int:
        return self._read(lambda c: self._stream_version(c, stream))

    @staticmethod
    def _stream_version(conn: Connection, stream: str) -> int:
        row = conn.execute(_VERSION, {"s": stream}).first()
        return -1 if row is None else int(row[0])

    def streams(self, prefix: str = "") -> list[StreamInfo]:
        # substr() equality, not LIKE: "a_b" is a literal prefix, never a pattern.
        sql = text(
            "SELECT stream, version, last_position FROM ll_streams "
            "WHERE substr(stream, 1, :n) = :p ORDER BY last_position"
        )
        rows = self._read(lambda c: c.execute(sql, {"n": len(prefix), "p": prefix}).all())
        return [StreamInfo(stream=r[0], version=r[1], last_position=r[2]) for r in rows]

    # -- blobs ------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidEvent("a blob must be bytes")
        digest = hashlib.sha256(data).hexdigest()
        sql = text(
            "INSERT INTO ll_blobs (sha256, size, data) VALUES (:h, :n, :d) "
            "ON CONFLICT (sha256) DO NOTHING"
        )
        with self._errors(), self.engine.connect() as conn, conn.begin():
            conn.execute(sql, {"h": digest, "n": len(data), "d": bytes(data)})
        return digest

    def get_blob(self, sha256: str) -> bytes:
        row = self._read(
            lambda c: c.execute(
                text("SELECT data FROM ll_blobs WHERE sha256 = :h"), {"h": sha256.lower()}
            ).first()
        )
        if row is None:
            raise BlobNotFound(f"no blob {sha256} in {self.url}")
        data = bytes(row[0])
        if hashlib.sha256(data).hexdigest() != sha256.lower():
            raise CorruptionDetected(f"blob {sha256} no longer matches its hash; restore it")
        return data

    def nonce_stats(self) -> NonceStats:
        """Size, expiries, evictions and horizon of the nonce ledger."""
        return self._read(nonces.stats)

    # -- integrity -----------------------------------------------------------------

    def verify(self) -> VerifyReport:
        with self._errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**self.dialect.snapshot_options())
            with conn.begin():
                report = verify_log(conn)
        problem = self._check_anchor()
        if report.ok and problem is not None:
            return msgspec.structs.replace(
                report, ok=False, problem=Problem.ANCHOR, message=problem,
                first_bad_position=None,
            )  # fmt: skip
        return report
