"""seeds: Kasmina lifecycle state per (run, slot).

For each seed slot of each run: the current stage, the seed in it, its
blueprint, its alpha, the command that last moved it, the position of the
last transition and how many transitions it has had. Built from the four
lifecycle events (``SeedGerminated``, ``SeedStageChanged``, ``SeedFossilized``,
``SeedPruned``); gate evaluations are not transitions and are not counted.

Runs are told apart by the envelope's ``run_id``; events appended without
one belong to the unnamed run ``""``. The same fold (:func:`apply_seed_event`)
keeps the slot table of the training-set projection, so both read models
agree on what a slot looked like at any position.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa

from labledger.events import Event
from labledger.events.esper import (
    SeedFossilized,
    SeedGerminated,
    SeedPruned,
    SeedStage,
    SeedStageChanged,
)
from labledger.events.typed import Typed
from labledger.projections.base import Projection, RowLike, TableSet, Tx
from labledger.store.base import RecordedEvent

SEED_EVENTS: tuple[type[Event], ...] = (
    SeedGerminated,
    SeedStageChanged,
    SeedFossilized,
    SeedPruned,
)
SeedEvent = SeedGerminated | SeedStageChanged | SeedFossilized | SeedPruned
UNNAMED_RUN = ""


def run_key(record: RecordedEvent) -> str:
    """The run an Esper event belongs to: its envelope ``run_id``, or the unnamed run ``""``."""
    return record.run_id or UNNAMED_RUN


def add_slots_table(tables: TableSet) -> sa.Table:
    """Declare the ``slots`` table (one row per run and slot) in ``tables``."""
    return tables.add(
        "slots",
        sa.Column("run_id", sa.Text, primary_key=True),
        sa.Column("slot", sa.Text, primary_key=True),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("seed_id", sa.Text, nullable=False),
        sa.Column("blueprint_id", sa.Text),
        sa.Column("alpha", sa.Double, nullable=False),
        sa.Column("last_command_id", sa.Text),
        sa.Column("first_position", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("transitions", sa.BigInteger, nullable=False),
    )


def next_slot_values(previous: RowLike | None, event: SeedEvent) -> dict[str, Any]:
    """The slot's new stage, seed, blueprint and alpha after one lifecycle event.

    A pruned seed no longer contributes to the host, so its alpha becomes 0; a
    stage change for another seed than the slot's current one (a late event of
    a replaced seed) still wins, since the log is the authority, but forgets
    the blueprint it cannot vouch for.
    """
    same_seed = previous is not None and previous.seed_id == event.seed_id
    blueprint = previous.blueprint_id if (previous is not None and same_seed) else None
    match event:
        case SeedGerminated():
            stage, alpha, blueprint = SeedStage.GERMINATED, 0.0, event.blueprint_id
        case SeedStageChanged():
            stage, alpha = event.to_stage, event.alpha
        case SeedFossilized():
            stage, alpha = SeedStage.FOSSILIZED, event.final_alpha
        case SeedPruned():
            stage, alpha = SeedStage.PRUNED, 0.0
    return {
        "stage": stage.value,
        "seed_id": event.seed_id,
        "blueprint_id": blueprint,
        "alpha": float(alpha),
        "last_command_id": event.command_id,
    }


def apply_seed_event(tx: Tx, run_id: str, event: SeedEvent, position: int) -> None:
    """Fold one lifecycle event into the ``slots`` table of ``tx``."""
    key = {"run_id": run_id, "slot": event.slot}
    previous = tx.get("slots", **key)
    values = next_slot_values(previous, event)
    if previous is None:
        tx.insert(
            "slots", **key, **values, first_position=position, last_position=position, transitions=1
        )
    else:
        tx.update(
            "slots", key, **values, last_position=position, transitions=previous.transitions + 1
        )


class SeedsProjection(Projection):
    """Per (run, slot): stage, seed, blueprint, alpha, last transition and history count."""

    name = "seeds"
    version = 1
    handles: ClassVar[tuple[type[Event], ...]] = SEED_EVENTS
    description = "Kasmina lifecycle state per run and slot"

    def define(self, tables: TableSet) -> None:
        add_slots_table(tables)

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        event = item.event
        assert isinstance(event, SeedEvent)
        apply_seed_event(tx, run_key(item.record), event, item.position)


def slot_rows(tx: Tx, run_id: str | None = None) -> list[dict[str, Any]]:
    """The slots (of one run, or all), ordered by run and slot, as plain dicts."""
    table = tx.table("slots")
    query = sa.select(table).order_by(table.c.run_id, table.c.slot)
    if run_id is not None:
        query = query.where(table.c.run_id == run_id)
    return [dict(row._mapping) for row in tx.query(query)]
