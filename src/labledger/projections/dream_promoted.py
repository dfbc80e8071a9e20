"""D-REAM read model ``dream_promoted``: the configuration in force per domain, and its history.

Folds ``dream.CandidatePromoted`` commands. Only the gate appends a signed
command whose signature, freshness and nonce held (refused ones become
``security.CommandRejected`` in another stream), so every command seen here was
verified; eligibility (safe, improved by its CI) was checked before signing
(``lab.dream.promote``). The latest promotion of a domain is in force.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.events import Event
from labledger.events.dream import CandidatePromoted
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx

_canon = msgspec.json.Encoder(order="sorted").encode
_FIELDS = ("domain", "cand_id", "genome", "promoted_by", "key_id", "actor", "recorded_at_us")


class DreamPromotedProjection(Projection):
    """Per domain the promoted genome: who promoted it, when, on what evidence."""

    name = "dream_promoted"
    version = 1
    description = "D-REAM: per domain the promoted configuration, who, when, on what evidence"
    handles = (CandidatePromoted,)

    def define(self, tables: TableSet) -> None:
        tables.add(
            "promotions",
            sa.Column("position", sa.BigInteger, primary_key=True),
            *(sa.Column(k, sa.Text, nullable=False) for k in _FIELDS[:5]),
            sa.Column("actor", sa.Text),
            sa.Column("recorded_at_us", sa.BigInteger, nullable=False),
            sa.Column("run_id", sa.Text),
            sa.Column("command_id", sa.Text, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            sa.Column("evidence", sa.Text, nullable=False),
        )
        tables.add(
            "in_force",
            sa.Column("domain", sa.Text, primary_key=True),
            sa.Column("position", sa.BigInteger, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event, record = item.event, item.record
        if not isinstance(event, CandidatePromoted):
            return
        tx.insert(
            "promotions",
            position=record.position,
            domain=event.domain,
            cand_id=event.cand_id,
            genome=_canon(event.genome).decode(),
            promoted_by=event.promoted_by,
            key_id=event.security.key_id,
            actor=record.actor,
            recorded_at_us=record.recorded_at_us,
            run_id=record.run_id,
            command_id=event.command_id,
            reason=event.reason,
            evidence=_canon(event.evidence).decode(),
        )
        tx.upsert("in_force", {"domain": event.domain}, position=record.position)


def promoted(tx: Tx, domain: str | None = None) -> list[dict[str, Any]]:
    """The configuration in force per domain (sorted): cand_id, genome, who, when, evidence.

    ``promoted_at_us`` is the command's recording time (microseconds since the epoch, UTC).
    """
    in_force, promotions = tx.table("in_force"), tx.table("promotions")
    query = sa.select(promotions).join(in_force, in_force.c.position == promotions.c.position)
    if domain is not None:
        query = query.where(in_force.c.domain == domain)
    rows = tx.query(query.order_by(promotions.c.domain)).all()
    return [
        {
            "domain": r.domain,
            "cand_id": r.cand_id,
            "genome": msgspec.json.decode(r.genome),
            "promoted_by": r.promoted_by,
            "key_id": r.key_id,
            "actor": r.actor,
            "promoted_at_us": r.recorded_at_us,
            "position": r.position,
            "run_id": r.run_id,
            "reason": r.reason,
            "evidence": msgspec.json.decode(r.evidence),
        }
        for r in rows
    ]
