"""ToolGen ⇄ RepairLab: the tool-synthesis tournament of seed ``001_…``.

Specs and templates are data files in this package. The decision logic is
pure (``budgets``, ``scoring``, ``plan``, ``mutate``, ``evolve``, ``synth``,
``records``, the candidate search order in ``repair``); the I/O is around it:
budgeted subprocesses (``evaluate``), the tournament loop (``tournament``),
the RepairLab worker (``repairlab``) and their orchestration (``run``).
"""

from __future__ import annotations

from labledger.lab.toolgen.run import RunSummary, run_toolgen
from labledger.lab.toolgen.tournament import TournamentConfig

__all__ = ["RunSummary", "TournamentConfig", "run_toolgen"]
