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
    from labledger.projections.dream import DreamBaselinesProjection, DreamCandidatesProjection
    from labledger.projections.dream_promoted import DreamPromotedProjection

    return [DreamBaselinesProjection(), DreamCandidatesProjection(), DreamPromotedProjection()]


def _toolgen() -> list[Projection]:
    from labledger.projections.toolgen import ToolgenProjection

    return [ToolgenProjection()]


def _esper() -> list[Projection]:
    from labledger.projections.audit import AuditProjection, NonceLedgerProjection
    from labledger.projections.esper_training import EsperTrainingProjection
    from labledger.projections.seeds import SeedsProjection
    from labledger.projections.telemetry_contract import TelemetryContractProjection

    return [
        AuditProjection(),
        EsperTrainingProjection(),
        NonceLedgerProjection(),
        SeedsProjection(),
        TelemetryContractProjection(),
    ]
