"""audit and nonce_ledger: who decided what, what verified it, what came of it.

``audit`` keeps, per command id, the links of its chain (DESIGN §4): the
command (position, policy version, risk, coverage, the policy's stated
reason, the envelope's actor, key id), its verification (a
``security.CommandAccepted`` when one is recorded; a command in the log was
admitted by the store's gate, which checked signature, freshness and nonce
at append; a ``security.CommandRejected`` when refused), its effects (seed
lifecycle events and rollbacks naming the command), its field report and the
reward that report earns in the training set. :func:`trail` reads one chain
in log order; :func:`rejected` lists refusals.

``nonce_ledger`` is the deterministic view of the store's nonce ledger:
every admitted command's nonce with its key, issue time, expiry
(``issued_at + freshness_window``) and position, and refusals counted by
reason and key. Unlike the store's table it never expires or evicts (that
depends on the wall clock); ``expires_at_us`` says when each nonce stopped
mattering.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

import sqlalchemy as sa

from labledger.events import Event
from labledger.events.esper import (
    AdaptationCommand,
    FieldReport,
    RollbackPerformed,
    SeedFossilized,
    SeedGerminated,
    SeedPruned,
    SeedStageChanged,
)
from labledger.events.security import CommandAccepted, CommandRejected, SignedCommand
from labledger.events.typed import Typed
from labledger.projections.base import Projection, TableSet, Tx
from labledger.projections.esper_training import REWARD_FORMULA, reward
from labledger.projections.seeds import run_key
from labledger.security.gate import GATE_ACTOR

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EffectEvent = SeedGerminated | SeedStageChanged | SeedFossilized | SeedPruned | RollbackPerformed


def _micros(moment: dt.datetime | dt.timedelta) -> int:
    delta = moment - _EPOCH if isinstance(moment, dt.datetime) else moment
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _key(position: int, run_id: str, command_id: str | None) -> dict[str, Any]:
    return {"position": position, "run_id": run_id, "command_id": command_id}


def _effect(event: EffectEvent) -> dict[str, Any]:
    """What an effect did, in a few words, and where."""
    match event:
        case SeedGerminated():
            what = f"germinated {event.seed_id} from {event.blueprint_id} (epoch {event.epoch})"
        case SeedStageChanged():
            what = (
                f"{event.seed_id}: {event.from_stage.value} -> {event.to_stage.value} "
                f"alpha={event.alpha} (epoch {event.epoch})"
            )
        case SeedFossilized():
            what = f"{event.seed_id} fossilized at alpha={event.final_alpha} (epoch {event.epoch})"
        case SeedPruned():
            what = f"{event.seed_id} pruned in {event.stage.value}: {event.reason}"
        case RollbackPerformed():
            what = f"rollback to {event.checkpoint_id}: {event.reason}"
    return {"kind": event.TYPE, "slot": getattr(event, "slot", None), "detail": what}


class AuditProjection(Projection):
    """Per command id: command, verification, effects, field report, reward."""

    name = "audit"
    # 2: the reward is esper_training.reward (with the rent; #16); 3: reward v3;
    # 4: each report keeps the reward version it was measured under (v4: a new control)
    version = 4
    handles: ClassVar[tuple[type[Event], ...]] = (
        AdaptationCommand,
        CommandAccepted,
        CommandRejected,
        SeedGerminated,
        SeedStageChanged,
        SeedFossilized,
        SeedPruned,
        RollbackPerformed,
        FieldReport,
    )
    description = "audit trail: command, verification, effects, field report, reward"

    def define(self, tables: TableSet) -> None:
        def common(name: str, *columns: sa.Column[Any]) -> None:
            table = tables.add(
                name,
                sa.Column("position", sa.BigInteger, primary_key=True),
                sa.Column("run_id", sa.Text, nullable=False),
                sa.Column("command_id", sa.Text),
                sa.Column("actor", sa.Text),
                *columns,
            )
            sa.Index(f"ix_{table.name}_cmd", table.c.command_id)

        text = sa.Text
        common(
            "commands",
            *(sa.Column(n, text) for n in ("slot", "operation", "policy_version", "reason")),
            *(sa.Column(n, sa.Double) for n in ("risk", "coverage")),
            *(sa.Column(n, text) for n in ("key_id", "nonce", "issued_at")),
        )
        common(
            "verdicts",
            *(sa.Column(n, text) for n in ("verdict", "reason", "detail", "key_id", "nonce")),
            sa.Column("command_digest", text),
        )
        common("effects", *(sa.Column(n, text) for n in ("kind", "slot", "detail")))
        common(
            "reports",
            sa.Column("outcome", text),
            *(sa.Column(n, sa.Double) for n in ("loss_delta", "accuracy_delta", "reward")),
            sa.Column("observation_window_epochs", sa.BigInteger),
            sa.Column("reward_version", sa.BigInteger),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event, record = item.event, item.record
        key = _key(item.position, run_key(record), getattr(event, "command_id", None))
        match event:
            case AdaptationCommand():
                sec, meta = event.security, event.metadata
                tx.insert(
                    "commands",
                    **key,
                    actor=record.actor,
                    slot=event.target_slot,
                    operation=event.operation.value,
                    policy_version=meta.policy_version,
                    reason=meta.reason,
                    risk=meta.risk,
                    coverage=meta.coverage,
                    key_id=sec.key_id,
                    nonce=sec.nonce,
                    issued_at=sec.issued_at.isoformat(),
                )
            case CommandAccepted() | CommandRejected():
                rejected = isinstance(event, CommandRejected)
                tx.insert(
                    "verdicts",
                    **key,
                    actor=record.actor,
                    verdict="rejected" if rejected else "accepted",
                    reason=event.reason.value if isinstance(event, CommandRejected) else None,
                    detail=event.detail if isinstance(event, CommandRejected) else None,
                    key_id=event.key_id,
                    nonce=event.nonce,
                    command_digest=event.command_digest,
                )
            case FieldReport():
                tx.insert(
                    "reports",
                    **key,
                    actor=record.actor,
                    outcome=event.outcome.value,
                    loss_delta=event.delta.loss_delta,
                    accuracy_delta=event.delta.accuracy_delta,
                    reward=reward(event),
                    observation_window_epochs=event.delta.observation_window_epochs,
                    reward_version=_reward_version(event),
                )
            case _:
                assert isinstance(event, EffectEvent)
                if event.command_id is not None:
                    tx.insert("effects", **key, actor=record.actor, **_effect(event))


def _rows(tx: Tx, name: str, command_id: str) -> list[dict[str, Any]]:
    table = tx.table(name)
    query = sa.select(table).where(table.c.command_id == command_id).order_by(table.c.position)
    return [dict(row._mapping) for row in tx.query(query)]


def trail(tx: Tx, command_id: str) -> list[dict[str, Any]]:
    """The chain of one command id, in log order: each link with ``step`` and ``position``.

    Steps: ``command``, ``verification`` (one per command admitted — by the
    gate, or a recorded acceptance — and one per refusal), ``effect``,
    ``field_report`` and, after each report, ``reward``. Empty when the id is
    unknown.
    """
    links: list[dict[str, Any]] = []
    accepted = {r["nonce"] for r in _rows(tx, "verdicts", command_id) if r["verdict"] == "accepted"}
    for row in _rows(tx, "commands", command_id):
        links.append({"step": "command", **row})
        if row["nonce"] not in accepted:
            links.append(
                {
                    "step": "verification",
                    "position": row["position"],
                    "verdict": "admitted",
                    "actor": GATE_ACTOR,
                    "key_id": row["key_id"],
                    "nonce": row["nonce"],
                    "detail": "signature, freshness and nonce checked at append",
                }
            )
    links += [{"step": "verification", **r} for r in _rows(tx, "verdicts", command_id)]
    links += [{"step": "effect", **r} for r in _rows(tx, "effects", command_id)]
    for report in _rows(tx, "reports", command_id):
        links.append({"step": "field_report", **report})
        links.append(
            {
                "step": "reward",
                "position": report["position"],
                "value": report["reward"],
                "formula": REWARD_FORMULA,
                "reward_version": report["reward_version"],
            }
        )
    order = {"command": 0, "verification": 1, "effect": 2, "field_report": 3, "reward": 4}
    return sorted(links, key=lambda link: (link["position"], order[link["step"]]))


def _reward_version(report: FieldReport) -> int | None:
    """The version a report was written under; None (absent) before reports recorded it.

    The formula is today's (:data:`REWARD_FORMULA`), but the deltas it is applied to
    were measured against the control of that version (v4 replays rollbacks).
    """
    value = report.extra_metrics.get("reward_version")
    return None if value is None else int(value)


def rejected(tx: Tx) -> list[dict[str, Any]]:
    """Every refused command in log order: position, command id, reason, detail, key, nonce."""
    table = tx.table("verdicts")
    query = sa.select(table).where(table.c.verdict == "rejected").order_by(table.c.position)
    return [dict(row._mapping) for row in tx.query(query)]


class NonceLedgerProjection(Projection):
    """Admitted nonces with key, issue time, expiry and position; refusals by reason and key."""

    name = "nonce_ledger"
    version = 1
    handles: ClassVar[tuple[type[Event], ...]] = (AdaptationCommand, CommandRejected)
    description = "nonce ledger: admitted nonces, refusals by reason and key"

    def define(self, tables: TableSet) -> None:
        tables.add(
            "nonces",
            sa.Column("nonce", sa.Text, primary_key=True),
            sa.Column("key_id", sa.Text, nullable=False),
            sa.Column("issued_at_us", sa.BigInteger, nullable=False),
            sa.Column("expires_at_us", sa.BigInteger, nullable=False),
            sa.Column("command_type", sa.Text, nullable=False),
            sa.Column("command_id", sa.Text),
            sa.Column("position", sa.BigInteger, nullable=False),
        )
        tables.add(
            "refusals",
            sa.Column("reason", sa.Text, primary_key=True),
            sa.Column("key_id", sa.Text, primary_key=True),
            sa.Column("total", sa.BigInteger, nullable=False),
            sa.Column("last_position", sa.BigInteger, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event = item.event
        if isinstance(event, SignedCommand):
            sec = event.security
            if tx.get("nonces", nonce=sec.nonce) is not None:
                return  # the store refuses replays; a restored log could still carry one
            issued = _micros(sec.issued_at)
            tx.insert(
                "nonces",
                nonce=sec.nonce,
                key_id=sec.key_id,
                issued_at_us=issued,
                expires_at_us=issued + _micros(sec.freshness_window),
                command_type=event.TYPE,
                command_id=getattr(event, "command_id", None),
                position=item.position,
            )
            return
        assert isinstance(event, CommandRejected)
        key = {"reason": event.reason.value, "key_id": event.key_id or ""}
        row = tx.get("refusals", **key)
        total = 1 if row is None else row.total + 1
        tx.upsert("refusals", key, total=total, last_position=item.position)


def nonce_summary(tx: Tx) -> dict[str, Any]:
    """Admitted nonces per key and refusals per (reason, key), for ``labledger esper nonces``."""
    nonces, refusals = tx.table("nonces"), tx.table("refusals")
    per_key = tx.query(
        sa.select(
            nonces.c.key_id,
            sa.func.count(),
            sa.func.min(nonces.c.position),
            sa.func.max(nonces.c.position),
        )
        .group_by(nonces.c.key_id)
        .order_by(nonces.c.key_id)
    )
    return {
        "admitted": [
            {"key_id": k, "count": n, "first_position": lo, "last_position": hi}
            for k, n, lo, hi in per_key
        ],
        "refused": [
            dict(r._mapping)
            for r in tx.query(sa.select(refusals).order_by(refusals.c.reason, refusals.c.key_id))
        ],
    }
