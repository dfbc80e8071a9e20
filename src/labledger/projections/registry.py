"""Every read model the lab ships, by name."""

from __future__ import annotations

from labledger.projections.base import Projection
from labledger.projections.runs import RunsProjection


def all_projections() -> list[Projection]:
    """One instance of each shipped projection, sorted by name."""
    found: list[Projection] = [RunsProjection()]
    found += _dream()
    found += _toolgen()
    found += _esper()
    return sorted(found, key=lambda p: p.name)


def _dream() -> list[Projection]:
    return []  # D-REAM read models: baselines, candidate packs


def _toolgen() -> list[Projection]:
    return []  # ToolGen read models: leaderboards


def _esper() -> list[Projection]:
    return []  # Esper read models: training set, audit trail, seeds, nonce ledger
