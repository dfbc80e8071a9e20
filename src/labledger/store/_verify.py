"""The full integrity scan behind ``verify``.

One read transaction (a consistent snapshot on both backends), streamed with
a server-side cursor so memory stays flat; the only state kept is the last
version seen per stream, which is checked against the stream index at the end.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from labledger.store._integrity import GENESIS, chain_link, record_checksum
from labledger.store.base import Problem, VerifyReport

_SCAN = text(
    "SELECT position, stream_version, schema_version, recorded_at, event_id, stream, type, "
    "correlation_id, causation_id, run_id, actor, data, metadata, checksum, chain "
    "FROM ll_events ORDER BY position"
)


def _bad(pos: int, checked: int, head_hash: bytes, problem: Problem, msg: str) -> VerifyReport:
    return VerifyReport(
        ok=False,
        head=pos,
        events_checked=checked,
        head_hash=head_hash.hex(),
        first_bad_position=pos,
        problem=problem,
        message=f"position {pos}: {msg}",
    )


def verify_log(conn: Connection) -> VerifyReport:
    expected_pos, link, checked = 1, GENESIS, 0
    versions: dict[str, int] = {}
    result = conn.execution_options(stream_results=True, yield_per=2000).execute(_SCAN)
    for row in result:
        pos, version, stream = row[0], row[1], row[5]
        data, metadata = bytes(row[11]), bytes(row[12])
        stored_sum, stored_link = bytes(row[13]), bytes(row[14])
        if pos != expected_pos:
            what = "missing" if pos > expected_pos else "repeated"
            return _bad(
                expected_pos, checked, link, Problem.GAP,
                f"expected position {expected_pos}, found {pos} (events {what})",
            )
        computed = record_checksum(
            pos, version, row[2], row[3], row[4], stream, row[6],
            row[7], row[8], row[9], row[10], data, metadata,
        )
        if computed != stored_sum:
            return _bad(pos, checked, link, Problem.CHECKSUM,
                        "checksum mismatch: the record's stored bytes were changed")
        link = chain_link(link, computed)
        if link != stored_link:
            return _bad(pos, checked, link, Problem.CHAIN,
                        "hash-chain link mismatch: records before it were removed, "
                        "inserted or reordered")
        if version != versions.get(stream, -1) + 1:
            return _bad(pos, checked, link, Problem.ORDER,
                        f"stream {stream!r} jumps from version {versions.get(stream, -1)} "
                        f"to {version}")
        versions[stream] = version
        checked += 1
        expected_pos += 1
    result.close()
    index = {r[0]: r[1] for r in conn.execute(text("SELECT stream, version FROM ll_streams"))}
    if index != versions:
        wrong = sorted(set(index.items()) ^ set(versions.items()))
        return VerifyReport(
            ok=False, head=checked, events_checked=checked, head_hash=link.hex(),
            first_bad_position=None, problem=Problem.INDEX,
            message=f"stream index disagrees with the log for {wrong[0][0]!r}",
        )
    return VerifyReport(ok=True, head=checked, events_checked=checked, head_hash=link.hex())
