"""The full integrity scan behind ``verify``.

One read transaction (a consistent snapshot on both backends), streamed with
a server-side cursor so memory stays flat; the only state kept is the last
version seen per stream, which is checked against the stream index at the end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, text

from labledger.store._integrity import GENESIS, chain_link, record_checksum
from labledger.store.base import Problem, VerifyReport

_SCAN = text(
    "SELECT position, stream_version, schema_version, recorded_at, event_id, stream, type, "
    "correlation_id, causation_id, run_id, actor, data, metadata, checksum, chain "
    "FROM ll_events ORDER BY position"
)


class _Damage(Exception):
    def __init__(self, position: int | None, problem: Problem, message: str) -> None:
        self.position, self.problem, self.message = position, problem, message


def verify_log(conn: Connection) -> VerifyReport:
    head = int(conn.execute(text("SELECT COALESCE(MAX(position), 0) FROM ll_events")).scalar_one())
    scan = _Scan()
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(_SCAN)
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
            pos, version, stream = row[0], row[1], row[5]
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
                computed = record_checksum(
                    pos,
                    version,
                    row[2],
                    row[3],
                    row[4],
                    stream,
                    row[6],
                    row[7],
                    row[8],
                    row[9],
                    row[10],
                    bytes(row[11]),
                    bytes(row[12]),
                )
            except (struct.error, TypeError, ValueError, AttributeError) as exc:
                # A damaged record can hold a value of the wrong type (a REAL where
                # an INTEGER belongs): that is a checksum failure, not a crash.
                damage = _Damage(
                    pos, Problem.CHECKSUM, f"a stored field has the wrong type ({exc})"
                )
                raise damage from exc
            if computed != bytes(row[13]):
                raise _Damage(
                    pos,
                    Problem.CHECKSUM,
                    "checksum mismatch: the record's stored bytes were changed",
                )
            link = chain_link(self.link, computed)
            if link != bytes(row[14]):
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
