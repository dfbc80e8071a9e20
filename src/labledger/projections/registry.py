"""Every read model the lab ships, by name."""

from __future__ import annotations

from labledger.projections.base import Projection
from labledger.projections.runs import RunsProjection


def all_projections() -> list[Projection]:
    """One instance of each shipped projection, sorted by name."""
    found: list[Projection] = [RunsProjection()]
    return sorted(found, key=lambda p: p.name)
