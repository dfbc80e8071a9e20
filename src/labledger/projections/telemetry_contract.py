"""telemetry_contract: the telemetry event kinds and ordering rules of seed ``003_…``, checked.

Reads every ``esper.TelemetryPacket``; each ``TelemetryEvent`` in a packet's
``events`` list is one telemetry event whose **kind** is its ``description``
(upper-cased), e.g. ``EPOCH_COMPLETED``. An ``ANALYTICS_SNAPSHOT`` names its
snapshot kind in ``attributes["kind"]`` (or in the description after a colon):
``ANALYTICS_SNAPSHOT:last_action``, ``…:batch_stats``, ``…:action_distribution``.
Order is log order, then order within a packet. Per run (envelope ``run_id``;
none is the unnamed run ``""``):

**epoch rules** — the epoch is ``attributes["epoch"]``; without one,
``EPOCH_COMPLETED`` counts as the run's next epoch and a last-action snapshot
belongs to the run's latest completed epoch.

- ``epoch_before_last_action``: an epoch's ``ANALYTICS_SNAPSHOT:last_action``
  comes after that epoch's ``EPOCH_COMPLETED``.
- ``epoch_completed_once`` / ``last_action_once``: at most one of each per epoch.

**batch tail rule** ``batch_tail_order`` — per batch (``attributes["batch"]``;
without one, the run's current batch, and a tail event that cannot continue a
*complete* batch starts the next one), the tail events that occur occur in the
order ``VALUE_COLLAPSE_DETECTED → PPO_UPDATE_COMPLETED →
ANALYTICS_SNAPSHOT:batch_stats → BATCH_EPOCH_COMPLETED →
ANALYTICS_SNAPSHOT:action_distribution``, each at most once, and none of the
three required ones (PPO update, batch stats, batch epoch completed) is
skipped before a later tail event. ``VALUE_COLLAPSE_DETECTED`` and the action
distribution apply only when they occur. A batch still open when the log ends
is not a violation (the run may be going on).

Each violation is a row (run, rule, position, index in the packet, kind,
detail). Event counts per (run, kind) are kept beside them — the seed's
"telemetry event counts baseline".
"""

from __future__ import annotations

from typing import ClassVar

import msgspec
import sqlalchemy as sa

from labledger.events import Event
from labledger.events.telemetry import TelemetryEvent, TelemetryPacket
from labledger.events.typed import Typed
from labledger.projections.base import Projection, RowLike, TableSet, Tx
from labledger.projections.seeds import run_key

EPOCH_COMPLETED = "EPOCH_COMPLETED"
SNAPSHOT = "ANALYTICS_SNAPSHOT"
LAST_ACTION = f"{SNAPSHOT}:last_action"
VALUE_COLLAPSE = "VALUE_COLLAPSE_DETECTED"
PPO_UPDATE = "PPO_UPDATE_COMPLETED"
BATCH_STATS = f"{SNAPSHOT}:batch_stats"
BATCH_EPOCH_COMPLETED = "BATCH_EPOCH_COMPLETED"
ACTION_DISTRIBUTION = f"{SNAPSHOT}:action_distribution"

BATCH_TAIL: tuple[str, ...] = (
    VALUE_COLLAPSE,
    PPO_UPDATE,
    BATCH_STATS,
    BATCH_EPOCH_COMPLETED,
    ACTION_DISTRIBUTION,
)
"""The batch tail, in the order the seed requires."""
REQUIRED_TAIL = frozenset({PPO_UPDATE, BATCH_STATS, BATCH_EPOCH_COMPLETED})
_COMPLETE_STAGE = BATCH_TAIL.index(BATCH_EPOCH_COMPLETED)

RULES = (
    "epoch_before_last_action",
    "epoch_completed_once",
    "last_action_once",
    "batch_tail_order",
)


class Violation(msgspec.Struct, frozen=True, kw_only=True):
    """One broken ordering rule."""

    run_id: str
    rule: str
    position: int
    index: int
    """Index of the offending event in its packet's ``events`` list."""
    kind: str
    detail: str


def kind_of(event: TelemetryEvent) -> str:
    """The normalized kind of a telemetry event (see the module docstring)."""
    name, _, sub = event.description.partition(":")
    name = name.strip().upper()
    if name == SNAPSHOT:
        sub = sub or event.attributes.get("kind", "")
        return f"{SNAPSHOT}:{sub.strip().lower()}" if sub.strip() else SNAPSHOT
    return name


class TelemetryContractProjection(Projection):
    """Violations of the telemetry ordering rules, and event counts per run and kind."""

    name = "telemetry_contract"
    version = 1
    handles: ClassVar[tuple[type[Event], ...]] = (TelemetryPacket,)
    description = "telemetry ordering rules of seed 003 (epoch and batch tail), violations"

    def define(self, tables: TableSet) -> None:
        tables.add(
            "runs",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("epochs_completed", sa.BigInteger, nullable=False),
            sa.Column("last_epoch", sa.Text),
            sa.Column("batch_seq", sa.BigInteger, nullable=False),
        )
        tables.add(
            "epochs",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("epoch", sa.Text, primary_key=True),
            sa.Column("completed_position", sa.BigInteger),
            sa.Column("last_action_position", sa.BigInteger),
        )
        tables.add(
            "batches",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("batch", sa.Text, primary_key=True),
            sa.Column("stage", sa.Integer, nullable=False),
            sa.Column("last_position", sa.BigInteger, nullable=False),
        )
        tables.add(
            "kinds",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("kind", sa.Text, primary_key=True),
            sa.Column("events", sa.BigInteger, nullable=False),
        )
        tables.add(
            "violations",
            sa.Column("position", sa.BigInteger, primary_key=True),
            sa.Column("event_index", sa.Integer, primary_key=True),
            sa.Column("rule", sa.Text, primary_key=True),
            sa.Column("run_id", sa.Text, nullable=False),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("detail", sa.Text, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        packet = item.event
        assert isinstance(packet, TelemetryPacket)
        run_id = run_key(item.record)
        for index, event in enumerate(packet.events):
            _Check(tx, run_id, item.position, index, event).run()


class _Check:
    """One telemetry event against the rules (a small object to keep the context together)."""

    def __init__(self, tx: Tx, run_id: str, position: int, index: int, ev: TelemetryEvent):
        self.tx, self.run_id, self.position, self.index = tx, run_id, position, index
        self.attributes = ev.attributes
        self.kind = kind_of(ev)

    def run(self) -> None:
        self._count()
        if self.kind == EPOCH_COMPLETED:
            self._epoch_completed()
        elif self.kind == LAST_ACTION:
            self._last_action()
        if self.kind in BATCH_TAIL:
            self._batch_tail()

    def _violate(self, rule: str, detail: str) -> None:
        self.tx.insert(
            "violations",
            position=self.position,
            event_index=self.index,
            rule=rule,
            run_id=self.run_id,
            kind=self.kind,
            detail=detail,
        )

    def _count(self) -> None:
        key = {"run_id": self.run_id, "kind": self.kind}
        row = self.tx.get("kinds", **key)
        self.tx.upsert("kinds", key, events=1 if row is None else row.events + 1)

    def _run_row(self) -> RowLike:
        row = self.tx.get("runs", run_id=self.run_id)
        if row is None:
            self.tx.insert("runs", run_id=self.run_id, epochs_completed=0, batch_seq=1)
            row = self.tx.get("runs", run_id=self.run_id)
            assert row is not None
        return row

    def _epoch_completed(self) -> None:
        run = self._run_row()
        epoch = self.attributes.get("epoch") or str(run.epochs_completed + 1)
        self.tx.update(
            "runs",
            {"run_id": self.run_id},
            epochs_completed=run.epochs_completed + 1,
            last_epoch=epoch,
        )
        key = {"run_id": self.run_id, "epoch": epoch}
        row = self.tx.get("epochs", **key)
        if row is not None and row.completed_position is not None:
            self._violate(
                "epoch_completed_once",
                f"epoch {epoch} already completed at position {row.completed_position}",
            )
            return
        self.tx.upsert("epochs", key, completed_position=self.position)

    def _last_action(self) -> None:
        epoch = self.attributes.get("epoch") or self._run_row().last_epoch
        if epoch is None:
            self._violate("epoch_before_last_action", "last-action snapshot before any epoch")
            return
        key = {"run_id": self.run_id, "epoch": epoch}
        row = self.tx.get("epochs", **key)
        if row is None or row.completed_position is None:
            self._violate(
                "epoch_before_last_action",
                f"last-action snapshot of epoch {epoch} before its {EPOCH_COMPLETED}",
            )
        elif row.last_action_position is not None:
            self._violate(
                "last_action_once",
                f"epoch {epoch} already had a last-action snapshot at "
                f"position {row.last_action_position}",
            )
            return
        self.tx.upsert("epochs", key, last_action_position=self.position)

    def _batch_tail(self) -> None:
        stage = BATCH_TAIL.index(self.kind)
        explicit = self.attributes.get("batch")
        run = self._run_row()
        batch = explicit or f"#{run.batch_seq}"
        row = self.tx.get("batches", run_id=self.run_id, batch=batch)
        if explicit is None and row is not None and _COMPLETE_STAGE <= row.stage >= stage:
            # the implicit batch is complete and this event cannot continue it: a new batch
            self.tx.update("runs", {"run_id": self.run_id}, batch_seq=run.batch_seq + 1)
            batch, row = f"#{run.batch_seq + 1}", None
        done = -1 if row is None else row.stage
        if stage <= done:
            self._violate(
                "batch_tail_order",
                f"batch {batch}: {self.kind} after {BATCH_TAIL[done]} (want the order "
                f"{' → '.join(BATCH_TAIL)}, each once)",
            )
            return
        skipped = [k for k in BATCH_TAIL[done + 1 : stage] if k in REQUIRED_TAIL]
        if skipped:
            self._violate(
                "batch_tail_order",
                f"batch {batch}: {self.kind} without {', '.join(skipped)} before it",
            )
        self.tx.upsert(
            "batches",
            {"run_id": self.run_id, "batch": batch},
            stage=stage,
            last_position=self.position,
        )


def violations(tx: Tx, run_id: str | None = None) -> list[Violation]:
    """Every violation (of one run), in log order."""
    table = tx.table("violations")
    query = sa.select(table)
    if run_id is not None:
        query = query.where(table.c.run_id == run_id)
    rows = tx.query(query.order_by(table.c.position, table.c.event_index, table.c.rule))
    return [
        Violation(
            run_id=r.run_id,
            rule=r.rule,
            position=r.position,
            index=r.event_index,
            kind=r.kind,
            detail=r.detail,
        )
        for r in rows
    ]


def kind_counts(tx: Tx, run_id: str | None = None) -> dict[str, dict[str, int]]:
    """Telemetry event counts: run → kind → count."""
    table = tx.table("kinds")
    query = sa.select(table).order_by(table.c.run_id, table.c.kind)
    if run_id is not None:
        query = query.where(table.c.run_id == run_id)
    out: dict[str, dict[str, int]] = {}
    for row in tx.query(query):
        out.setdefault(row.run_id, {})[row.kind] = int(row.events)
    return out
