"""The nonce ledger's SQL: which nonces were used, and keeping the ledger bounded.

Nonces of admitted commands are kept until their command could no longer be
fresh (issued_at + freshness window), then expire. Past ``max_size`` the
oldest are evicted early and the *horizon* rises to the newest evicted
issued_at: a command issued at or before the horizon is refused as stale, so
an evicted nonce can never be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, text

from labledger.store.hooks import NonceStats

DEFAULT_MAX_NONCES = 1_000_000

_SEEN = text("SELECT nonce FROM ll_nonces WHERE nonce IN :nonces").bindparams(
    bindparam("nonces", expanding=True)
)
_HORIZON = text("SELECT horizon FROM ll_nonce_stats WHERE id = 1")
_INSERT = text(
    "INSERT INTO ll_nonces (nonce, key_id, issued_at, expires_at, position) "
    "VALUES (:nonce, :key_id, :issued_at, :expires_at, :position)"
)


def seen(conn: Connection, nonces: Sequence[str]) -> tuple[set[str], int]:
    """The nonces among ``nonces`` already in the ledger, and the horizon."""
    found = {r[0] for r in conn.execute(_SEEN, {"nonces": list(nonces)})} if nonces else set()
    return found, int(conn.execute(_HORIZON).scalar_one())


def record(conn: Connection, rows: list[dict[str, Any]], now_us: int, max_size: int) -> None:
    """Insert admitted nonces, expire the stale ones, evict past ``max_size``."""
    conn.execute(_INSERT, rows)
    expired = conn.execute(
        text("DELETE FROM ll_nonces WHERE expires_at < :now"), {"now": now_us}
    ).rowcount
    size = conn.execute(
        text(
            "UPDATE ll_nonce_stats SET size = size + :added - :expired, "
            "expired = expired + :expired WHERE id = 1 RETURNING size"
        ),
        {"added": len(rows), "expired": expired},
    ).scalar_one()
    if size > max_size:
        _evict(conn, size - max_size)


def _evict(conn: Connection, count: int) -> None:
    oldest = conn.execute(
        text("SELECT nonce, issued_at FROM ll_nonces ORDER BY issued_at, nonce LIMIT :n"),
        {"n": count},
    ).all()
    conn.execute(
        text("DELETE FROM ll_nonces WHERE nonce IN :nonces").bindparams(
            bindparam("nonces", expanding=True)
        ),
        {"nonces": [r[0] for r in oldest]},
    )
    conn.execute(
        text(
            "UPDATE ll_nonce_stats SET size = size - :n, evicted = evicted + :n, "
            "horizon = CASE WHEN horizon > :h THEN horizon ELSE :h END WHERE id = 1"
        ),
        {"n": len(oldest), "h": max(r[1] for r in oldest)},
    )


def stats(conn: Connection) -> NonceStats:
    row = conn.execute(
        text("SELECT size, expired, evicted, horizon FROM ll_nonce_stats WHERE id = 1")
    ).one()
    return NonceStats(size=row[0], expired=row[1], evicted=row[2], horizon_us=row[3])
