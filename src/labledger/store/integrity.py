"""Record checksums and the global hash chain.

The checksum covers *every* stored field of a record, header and metadata
included: a checksum over the payload alone would miss a flipped bit in the
stream name, the version or the position. Fields are length-prefixed so that
moving bytes from one field to the next changes the digest, and ``None`` is
distinguished from the empty string.

The chain link of position p is ``sha256(link(p-1) || checksum(p))`` with
``link(0)`` all zeros, so deleting, inserting or reordering records breaks
every later link.

The full integrity scan behind ``verify``.

One read transaction (a consistent snapshot on both backends), streamed with
a server-side cursor so memory stays flat; the only state kept is the last
version seen per stream, which is checked against the stream index at the end.

The head anchor: the last known head (position + chain link), MAC-keyed, outside the database.

SQLite silently drops every commit after a damaged WAL frame, and its own
integrity check then says "ok"; an edit of event k with the chain
recomputed from k onwards passes ``verify`` too. Both leave the log
disagreeing with what it said earlier. The anchor remembers it: after every
commit the store writes ``(position, chain, mac)`` into one of two slots of a
side file (a torn write spoils at most the slot being written). On open and in
``verify`` the log is checked against it: a head below the anchor means
lost commits ("log regressed from P to Q; K events missing"), a different
chain link at the anchor's position means history was rewritten. Either
way appends are refused until an operator decides (``labledger anchor
accept``).

The MAC key lives outside the database (``LABLEDGER_ANCHOR_KEY`` as hex, or
a ``.key`` file beside the anchor, created with mode 0600): someone who can
rewrite the database but not read the key cannot forge a matching anchor.

Cost and direction of failure: the anchor is written after the commit it
records, without fsync. After a power cut it may lag the log (it then
protects a little less), but it can never run ahead of durable commits, so
it never raises a false alarm. With several writer processes the file holds
whichever process wrote last, again at or behind the true head.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Connection, text

from labledger.errors import CorruptionDetected
from labledger.store import schema
from labledger.store.base import Problem, VerifyReport

GENESIS = bytes(32)

_HEADER = struct.Struct(">qqqq")
_LEN = struct.Struct(">i")
_NONE = _LEN.pack(-1)


def _field(value: str | bytes | None) -> bytes:
    if value is None:
        return _NONE
    raw = value.encode() if isinstance(value, str) else value
    return _LEN.pack(len(raw)) + raw


def record_checksum(
    position: int,
    stream_version: int,
    schema_version: int,
    recorded_at_us: int,
    event_id: str,
    stream: str,
    type_name: str,
    correlation_id: str | None,
    causation_id: str | None,
    run_id: str | None,
    actor: str | None,
    data: bytes,
    metadata: bytes,
) -> bytes:
    """SHA-256 over the canonical framing of every stored field of one record."""
    return hashlib.sha256(
        b"".join(
            (
                _HEADER.pack(position, stream_version, schema_version, recorded_at_us),
                _field(event_id),
                _field(stream),
                _field(type_name),
                _field(correlation_id),
                _field(causation_id),
                _field(run_id),
                _field(actor),
                _field(data),
                _field(metadata),
            )
        )
    ).digest()


def row_checksum(row: Sequence[Any]) -> bytes:
    """:func:`record_checksum` of a row in ``schema.READ_COLUMNS`` order."""
    return record_checksum(
        row[0],
        row[2],
        row[5],
        row[6],
        row[3],
        row[1],
        row[4],
        row[7],
        row[8],
        row[9],
        row[10],
        bytes(row[schema.DATA]),
        bytes(row[schema.METADATA]),
    )


class RowFramer:
    """:func:`row_checksum` for the rows of one commit, in one pass.

    A commit's rows mostly repeat their stream, type, run and actor; their
    framing is built once per distinct value here instead of once per row.
    The bytes hashed are exactly :func:`record_checksum`'s.
    """

    __slots__ = ("_framed",)

    def __init__(self) -> None:
        self._framed: dict[str | None, bytes] = {None: _NONE}

    def _text(self, value: str | None) -> bytes:
        found = self._framed.get(value)
        if found is None:
            found = self._framed[value] = _field(value)
        return found

    def checksum(self, row: Sequence[Any]) -> bytes:
        """The checksum of a row in ``schema.READ_COLUMNS`` order."""
        text = self._text
        data, metadata = bytes(row[schema.DATA]), bytes(row[schema.METADATA])
        return hashlib.sha256(
            b"".join(
                (
                    _HEADER.pack(row[0], row[2], row[5], row[6]),
                    _field(row[3]),
                    text(row[1]),
                    text(row[4]),
                    text(row[7]),
                    text(row[8]),
                    text(row[9]),
                    text(row[10]),
                    _LEN.pack(len(data)),
                    data,
                    _LEN.pack(len(metadata)),
                    metadata,
                )
            )
        ).digest()


def chain_link(previous: bytes, checksum: bytes) -> bytes:
    return hashlib.sha256(previous + checksum).digest()


class _Damage(Exception):
    def __init__(self, position: int | None, problem: Problem, message: str) -> None:
        self.position, self.problem, self.message = position, problem, message


def verify_log(conn: Connection) -> VerifyReport:
    head = int(conn.execute(text("SELECT COALESCE(MAX(position), 0) FROM ll_events")).scalar_one())
    scan = _Scan()
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(text(schema.SCAN))
    try:
        scan.walk(result)
        index = {r[0]: r[1] for r in conn.execute(text("SELECT stream, version FROM ll_streams"))}
        scan.check_index(index)
    except _Damage as damage:
        where = "" if damage.position is None else f"position {damage.position}: "
        return VerifyReport(
            ok=False,
            head=head,
            events_checked=scan.checked,
            head_hash=scan.link.hex(),
            first_bad_position=damage.position,
            problem=damage.problem,
            message=where + damage.message,
        )
    finally:
        result.close()
    return VerifyReport(ok=True, head=head, events_checked=scan.checked, head_hash=scan.link.hex())


class _Scan:
    def __init__(self) -> None:
        self.link = GENESIS
        self.checked = 0
        self.versions: dict[str, int] = {}

    def walk(self, rows: Iterable[Sequence[Any]]) -> None:
        for row in rows:
            pos, stream, version = row[0], row[1], row[2]
            expected = self.checked + 1
            if not isinstance(pos, int):
                raise _Damage(expected, Problem.GAP, f"position {pos!r} is not an integer")
            if pos != expected:
                what = "missing" if pos > expected else "repeated"
                raise _Damage(
                    expected,
                    Problem.GAP,
                    f"expected position {expected}, found {pos} (events {what})",
                )
            try:
                computed = row_checksum(row)
            except (struct.error, TypeError, ValueError, AttributeError) as exc:
                # A damaged record can hold a value of the wrong type (a REAL where
                # an INTEGER belongs): that is a checksum failure, not a crash.
                damage = _Damage(
                    pos, Problem.CHECKSUM, f"a stored field has the wrong type ({exc})"
                )
                raise damage from exc
            if computed != bytes(row[schema.CHECKSUM]):
                raise _Damage(
                    pos,
                    Problem.CHECKSUM,
                    "checksum mismatch: the record's stored bytes were changed",
                )
            link = chain_link(self.link, computed)
            if link != bytes(row[schema.CHAIN]):
                raise _Damage(
                    pos,
                    Problem.CHAIN,
                    "hash-chain link mismatch: records before "
                    "it were removed, inserted or reordered",
                )
            previous = self.versions.get(stream, -1)
            if version != previous + 1:
                raise _Damage(
                    pos,
                    Problem.ORDER,
                    f"stream {stream!r} jumps from version {previous} to {version}",
                )
            self.versions[stream] = version
            self.link = link
            self.checked += 1

    def check_index(self, index: dict[str, int]) -> None:
        if index == self.versions:
            return
        stream = sorted(set(index.items()) ^ set(self.versions.items()))[0][0]
        raise _Damage(
            None,
            Problem.INDEX,
            f"stream {stream!r} is at version {index.get(stream, -1)} in the stream index "
            f"but {self.versions.get(stream, -1)} in the log: events were truncated or added "
            "behind the store's back",
        )


KEY_ENV = "LABLEDGER_ANCHOR_KEY"
PATH_ENV = "LABLEDGER_ANCHOR"
"""A path for the anchor (PostgreSQL has none by default), or ``off``."""


class AnchorState(msgspec.Struct, frozen=True):
    """A head: its position and chain link (hex)."""

    position: int
    chain: str


class AnchorMismatch(CorruptionDetected):
    """The log no longer matches its head anchor; appends are refused until an operator acts."""


SLOT = struct.Struct(">4sqq32s32s")  # magic, position, (unused) reserved, chain, mac
SLOT_SIZE = 128
MAGIC = b"LLA1"


class HeadAnchor:
    """Reads and advances one anchor file.

    The file holds two fixed-size slots; a head at position p is written to slot
    ``p % 2`` with one ``pwrite``. A torn write can spoil only the slot being
    written, and the reader takes the highest position among slots whose MAC
    holds, so the anchor survives a crash mid-write without temp files.
    """

    def __init__(self, path: Path, key: bytes | None = None, *, create_key: bool = True) -> None:
        self.path = path
        self.key = key if key is not None else _key_for(path, create=create_key)
        self._lock = threading.Lock()
        self._written = -1
        self._fd: int | None = None

    def _mac(self, position: int, chain: bytes) -> bytes:
        return hmac.new(
            self.key, MAGIC + position.to_bytes(8, "big") + chain, hashlib.sha256
        ).digest()

    def read(self) -> AnchorState | None:
        """The anchored head, or None when there is no anchor yet.

        Raises:
            AnchorMismatch: the file is unreadable or no slot's MAC matches.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise AnchorMismatch(f"head anchor {self.path} is unreadable ({exc})") from exc
        best: AnchorState | None = None
        for offset in (0, SLOT_SIZE):
            chunk = raw[offset : offset + SLOT.size]
            if len(chunk) < SLOT.size:
                continue
            magic, position, _, chain, mac = SLOT.unpack(chunk)
            if magic != MAGIC or not hmac.compare_digest(mac, self._mac(position, chain)):
                continue
            if best is None or position > best.position:
                best = AnchorState(position, chain.hex())
        if best is None and raw.strip(b"\0"):
            raise AnchorMismatch(
                f"head anchor {self.path} fails its MAC: it was edited, or the anchor key changed"
            )
        return best

    def advance(self, position: int, chain: bytes) -> None:
        """Record a committed head (never moves this process's anchor backwards)."""
        with self._lock:
            if position <= self._written:
                return
            self._write(position, chain)
            self._written = position

    def reset(self, position: int, chain: bytes) -> None:
        """An operator accepts the log as it is now (both slots rewritten)."""
        with self._lock:
            fd = self._open()
            os.ftruncate(fd, 0)
            self._write(position, chain)
            os.fsync(fd)
            self._written = position

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def _write(self, position: int, chain: bytes) -> None:
        slot = SLOT.pack(MAGIC, position, 0, chain, self._mac(position, chain))
        os.pwrite(self._open(), slot.ljust(SLOT_SIZE, b"\0"), (position % 2) * SLOT_SIZE)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _key_for(anchor: Path, *, create: bool) -> bytes:
    env = os.environ.get(KEY_ENV)
    if env:
        return bytes.fromhex(env)
    key_file = anchor.with_name(anchor.name + ".key")
    try:
        return bytes.fromhex(key_file.read_text().strip())
    except FileNotFoundError:
        if not create:
            raise
    key = secrets.token_bytes(32)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return bytes.fromhex(key_file.read_text().strip())
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex())
        fh.flush()
        os.fsync(fh.fileno())
    return key


def check(anchor: AnchorState | None, head: int, chain_at: bytes | None) -> str | None:
    """Why the log disagrees with its anchor, or None.

    Args:
        anchor: the anchored head.
        head: the log's head position now.
        chain_at: the log's chain link at the anchor's position (None if absent).
    """
    if anchor is None:
        return None
    if head < anchor.position:
        missing = anchor.position - head
        return (
            f"log regressed from {anchor.position} to {head}; {missing} events missing "
            "(a damaged WAL or a restored older copy). Restore from a backup, or run "
            "`labledger anchor accept` to accept the log as it is"
        )
    if chain_at is None or chain_at.hex() != anchor.chain:
        return (
            f"the chain link at position {anchor.position} differs from the anchor: history "
            "up to that position was rewritten. Restore from a backup, or run "
            "`labledger anchor accept` to accept the log as it is"
        )
    return None


def open_anchor(
    choice: Path | bool | None, default: Path | None, *, read_only: bool
) -> HeadAnchor | None:
    """The store's anchor: ``choice`` (a path, or False for none), else ``LABLEDGER_ANCHOR``
    (``off`` for none), else the dialect's ``default``."""
    env = os.environ.get(PATH_ENV)
    if choice is False or env == "off":
        return None
    path = choice if isinstance(choice, Path) else (Path(env) if env else default)
    if path is None:
        return None
    try:
        return HeadAnchor(path, create_key=not read_only)
    except OSError:
        return None  # read-only copy without its key: nothing to check against
