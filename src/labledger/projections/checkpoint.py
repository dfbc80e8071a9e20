"""The checkpoint row of a projection: version, active generation, position.

Every batch advances the row with a compare-and-set on (generation,
position) in the same transaction as the batch's rows: a second runner, or
a rebuild that swapped generations meanwhile, makes the CAS fail and the
batch roll back — the effect of each event is applied exactly once.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection, text

from labledger.errors import ProjectionError


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: int
    generation: int
    position: int
    events_applied: int
    updated_at_us: int


class CheckpointMoved(ProjectionError):
    """Another runner or a rebuild moved the checkpoint; the batch was rolled back."""


_SELECT = text(
    "SELECT name, version, generation, position, events_applied, updated_at "
    "FROM ll_projections WHERE name = :name"
)


def load(conn: Connection, name: str) -> Checkpoint | None:
    row = conn.execute(_SELECT, {"name": name}).first()
    if row is None:
        return None
    return Checkpoint(
        name=row[0],
        version=row[1],
        generation=row[2],
        position=row[3],
        events_applied=row[4],
        updated_at_us=row[5],
    )


def load_all(conn: Connection) -> dict[str, Checkpoint]:
    rows = conn.execute(
        text(
            "SELECT name, version, generation, position, events_applied, updated_at "
            "FROM ll_projections"
        )
    )
    return {
        r[0]: Checkpoint(
            name=r[0],
            version=r[1],
            generation=r[2],
            position=r[3],
            events_applied=r[4],
            updated_at_us=r[5],
        )
        for r in rows
    }


def create(conn: Connection, cp: Checkpoint) -> None:
    conn.execute(
        text(
            "INSERT INTO ll_projections "
            "(name, version, generation, position, events_applied, updated_at) "
            "VALUES (:name, :version, :generation, :position, :applied, :at)"
        ),
        {
            "name": cp.name,
            "version": cp.version,
            "generation": cp.generation,
            "position": cp.position,
            "applied": cp.events_applied,
            "at": cp.updated_at_us,
        },
    )


def advance(conn: Connection, old: Checkpoint, new: Checkpoint) -> None:
    """Move the checkpoint from ``old`` to ``new``, or raise CheckpointMoved."""
    done = conn.execute(
        text(
            "UPDATE ll_projections SET version = :version, generation = :generation, "
            "position = :position, events_applied = :applied, updated_at = :at "
            "WHERE name = :name AND generation = :old_generation AND position = :old_position"
        ),
        {
            "name": new.name,
            "version": new.version,
            "generation": new.generation,
            "position": new.position,
            "applied": new.events_applied,
            "at": new.updated_at_us,
            "old_generation": old.generation,
            "old_position": old.position,
        },
    ).rowcount
    if done != 1:
        raise CheckpointMoved(
            f"projection {old.name!r} moved past position {old.position} / generation "
            f"{old.generation} while this batch ran; the batch was rolled back"
        )


def forget(conn: Connection, name: str) -> None:
    conn.execute(text("DELETE FROM ll_projections WHERE name = :name"), {"name": name})
