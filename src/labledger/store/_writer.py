"""Committing planned appends: one durable transaction for one or many requests.

The fast path does not look event ids up before inserting: new ids are the
common case, and the unique index on ``event_id`` is the authority anyway.
When the insert hits it, the transaction rolls back and is planned again
with the ids looked up (an idempotent retry then gets its original
positions). A request that fails (expected version, replayed nonce) is
re-planned with ids too, so the retry of an already-appended batch is still
recognised.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from labledger.errors import LabledgerError
from labledger.store import nonces
from labledger.store.base import RecordedEvent
from labledger.store.dialects.base import Params, RawTxn
from labledger.store.planner import LogState, Outcome, Plan, Request, plan
from labledger.store.schema import CHAIN, EVENT_ID, READ_COLUMNS, ROW_COLUMNS, to_recorded

if TYPE_CHECKING:
    from labledger.store.sql import SqlEventStore

HEAD = "SELECT position, chain FROM ll_events ORDER BY position DESC LIMIT 1"
INSERT = f"INSERT INTO ll_events ({ROW_COLUMNS}) VALUES ({', '.join('?' * 15)})"
UPSERT_STREAM = (
    "INSERT INTO ll_streams (stream, version, last_position) VALUES (?, ?, ?) "
    "ON CONFLICT (stream) DO UPDATE SET version = excluded.version, "
    "last_position = excluded.last_position"
)
ID_CHUNK = 2000


class DuplicateId(Exception):
    """The optimistic insert met an existing event id; plan again with ids looked up."""


Committed = tuple[list[Outcome], tuple[int, bytes] | None]
"""The outcomes, and the new head (position, chain link) when rows were written."""


def commit(store: SqlEventStore, requests: Sequence[Request]) -> Committed:
    try:
        return _attempt(store, requests, check_ids=False)
    except DuplicateId:
        return _attempt(store, requests, check_ids=True)


def _attempt(store: SqlEventStore, requests: Sequence[Request], *, check_ids: bool
             ) -> Committed:  # fmt: skip
    dialect = store.dialect
    try:
        with dialect.append_txn(store.engine) as txn:
            planned = _plan(store, txn, requests, check_ids=check_ids)
            if planned.nonces:
                nonces.record(txn, planned.nonces, _now_us(store), store.max_nonces)
            if planned.rows:
                txn.executemany(INSERT, planned.rows)
                txn.executemany(
                    UPSERT_STREAM, [(s, v, p) for s, (v, p) in planned.versions.items()]
                )
                dialect.notify_appended_raw(txn, planned.rows[-1][0])
        last = planned.rows[-1] if planned.rows else None
        return planned.outcomes, (None if last is None else (last[0], last[CHAIN]))
    except Exception as exc:
        if not check_ids and dialect.is_duplicate_id(exc):
            raise DuplicateId from exc
        raise


def _now_us(store: SqlEventStore) -> int:
    return store.clock() // 1000


def _plan(store: SqlEventStore, txn: RawTxn, requests: Sequence[Request], *, check_ids: bool
          ) -> Plan:  # fmt: skip
    streams = sorted({part.stream for request in requests for part in request})
    wanted = [c.nonce for r in requests for p in r for c in p.claims if c is not None and c.nonce]
    queries: list[tuple[str, Params]] = [
        (HEAD, ()),
        (
            f"SELECT stream, version FROM ll_streams WHERE {txn.any_of('stream')}",
            (txn.list_param(streams),),
        ),
    ]
    if wanted:
        queries += [nonces.seen_query(txn, wanted), (nonces.HORIZON, ())]
    results = txn.fetch(queries)
    head_rows, version_rows = results[0], results[1]
    state = LogState(
        head=head_rows[0][0] if head_rows else 0,
        chain=bytes(head_rows[0][1]) if head_rows else bytes(32),
        versions={r[0]: r[1] for r in version_rows},
        existing={},
        recorded_at_us=_now_us(store),
        lookup=lambda stream: _stream_version(txn, stream),
    )
    if wanted:
        state.nonces_seen = {r[0] for r in results[2]}
        state.nonce_horizon_us = int(results[3][0][0])
    if check_ids:
        state.existing = _existing(txn, requests)
    planned = plan(requests, state, store.gate)
    if not check_ids and any(isinstance(o, LabledgerError) for o in planned.outcomes):
        # A conflict or a "replayed" nonce may be the retry of a batch that is
        # already in: recognise it by its ids.
        state.existing = _existing(txn, requests)
        if state.existing:
            planned = plan(requests, state, store.gate)
    return planned


def _existing(txn: RawTxn, requests: Sequence[Request]) -> dict[str, RecordedEvent]:
    ids = [e.id for request in requests for part in request for e in part.events]
    found: dict[str, RecordedEvent] = {}
    sql = f"SELECT {READ_COLUMNS} FROM ll_events WHERE {txn.any_of('event_id')}"
    for i in range(0, len(ids), ID_CHUNK):
        (rows,) = txn.fetch([(sql, (txn.list_param(ids[i : i + ID_CHUNK]),))])
        for row in rows:
            found[row[EVENT_ID]] = to_recorded(row)
    return found


def _stream_version(txn: RawTxn, stream: str) -> int:
    (rows,) = txn.fetch([("SELECT version FROM ll_streams WHERE stream = ?", (stream,))])
    return int(rows[0][0]) if rows else -1
