"""The nonce ledger's SQL: which nonces were used, and keeping the ledger bounded.

Nonces of admitted commands are kept until their command could no longer be
fresh (issued_at + freshness window), then expire. Past ``max_size`` the
oldest are evicted early and the *horizon* rises to the newest evicted
issued_at: a command issued at or before the horizon is refused as stale, so
an evicted nonce can never be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text

from labledger.store.base import NonceStats

if TYPE_CHECKING:
    from labledger.store.dialects.base import Params, RawTxn

DEFAULT_MAX_NONCES = 1_000_000

INSERT = (
    "INSERT INTO ll_nonces (nonce, key_id, issued_at, expires_at, position) VALUES (?, ?, ?, ?, ?)"
)
HORIZON = "SELECT horizon FROM ll_nonce_stats WHERE id = 1"


def seen_query(txn: RawTxn, nonces: Sequence[str]) -> tuple[str, Params]:
    """The query for the nonces among ``nonces`` already in the ledger."""
    return (
        f"SELECT nonce FROM ll_nonces WHERE {txn.any_of('nonce')}",
        (txn.list_param(nonces),),
    )


def record(txn: RawTxn, rows: Sequence[Params], now_us: int, max_size: int) -> None:
    """Insert admitted nonces, expire the stale ones, evict past ``max_size``."""
    txn.executemany(INSERT, rows)
    expired = txn.execute("DELETE FROM ll_nonces WHERE expires_at < ?", (now_us,))
    txn.execute(
        "UPDATE ll_nonce_stats SET size = size + ? - ?, expired = expired + ? WHERE id = 1",
        (len(rows), expired, expired),
    )
    (size,) = txn.fetch([("SELECT size FROM ll_nonce_stats WHERE id = 1", ())])[0][0]
    if size > max_size:
        _evict(txn, size - max_size)


def _evict(txn: RawTxn, count: int) -> None:
    oldest = txn.fetch(
        [("SELECT nonce, issued_at FROM ll_nonces ORDER BY issued_at, nonce LIMIT ?", (count,))]
    )[0]
    txn.execute(
        f"DELETE FROM ll_nonces WHERE {txn.any_of('nonce')}",
        (txn.list_param([r[0] for r in oldest]),),
    )
    horizon = max(r[1] for r in oldest)
    txn.execute(
        "UPDATE ll_nonce_stats SET size = size - ?, evicted = evicted + ?, "
        "horizon = CASE WHEN horizon > ? THEN horizon ELSE ? END WHERE id = 1",
        (len(oldest), len(oldest), horizon, horizon),
    )


def stats(conn: Connection) -> NonceStats:
    row = conn.execute(
        text("SELECT size, expired, evicted, horizon FROM ll_nonce_stats WHERE id = 1")
    ).one()
    return NonceStats(size=row[0], expired=row[1], evicted=row[2], horizon_us=row[3])
