"""Listing decisions: the command ids ``audit`` takes, from the ``audit`` read model.

The audit projection answers "what happened to command X"; this answers the
question before it, "which commands are there" — per run, newest last, each
with what decided it and how its field report judged it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from labledger.projections.base import Tx


def decisions(tx: Tx, run_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Commands in log order (the last ``limit`` of them), optionally of one run.

    Each row: ``position``, ``run_id``, ``command_id``, ``operation``, ``slot``,
    ``policy_version``, ``reason``, ``actor`` and, once reported, ``outcome``
    and ``reward`` (``None`` before the field report).
    """
    commands, reports = tx.table("commands"), tx.table("reports")
    query = (
        sa.select(
            commands.c.position,
            commands.c.run_id,
            commands.c.command_id,
            commands.c.operation,
            commands.c.slot,
            commands.c.policy_version,
            commands.c.reason,
            commands.c.actor,
            reports.c.outcome,
            reports.c.reward,
        )
        .outerjoin(reports, reports.c.command_id == commands.c.command_id)
        .order_by(commands.c.position.desc())
    )
    if run_id is not None:
        query = query.where(commands.c.run_id == run_id)
    if limit is not None:
        query = query.limit(limit)
    rows = [dict(row._mapping) for row in tx.conn.execute(query)]
    return rows[::-1]
