"""The projection engine as verbs use it: every read model, caught up before a read."""

from __future__ import annotations

from typing import Any

from labledger.cli._progress import ProgressLine
from labledger.projections import ProjectionEngine, all_projections
from labledger.store import EventStore


def engine_for(store: EventStore, **kwargs: Any) -> ProjectionEngine:
    """An engine over every registered projection (``kwargs`` as ``ProjectionEngine``)."""
    return ProjectionEngine(store, all_projections(), **kwargs)


def caught_up(
    store: EventStore, name: str, *, until: int | None = None, progress: bool = True
) -> ProjectionEngine:
    """An engine whose projection ``name`` has applied the log (up to ``until``).

    With ``progress`` a ``project NAME`` line on stderr shows the catch-up.
    """
    engine = engine_for(store)
    if not progress:
        engine.catch_up(name, until=until)
        return engine
    bar = ProgressLine(f"project {name}")
    engine.catch_up(name, until=until, progress=bar)
    bar.close()
    return engine
