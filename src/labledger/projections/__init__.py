"""Read models built by replaying the log (DESIGN §4)."""

from __future__ import annotations

from labledger.projections.base import Projection, TableSet, Tx
from labledger.projections.engine import ProjectionEngine
from labledger.projections.registry import all_projections

__all__ = ["Projection", "ProjectionEngine", "TableSet", "Tx", "all_projections"]
