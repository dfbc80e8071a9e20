"""The tournament's schedule: which spec each epoch teaches (the seed's curriculum),
and the trials of one generation. Pure and deterministic.

Curriculum (seed ``001_…``, generalised to any number of specs): ``seed`` gives
the first spec epochs 0–5, each next spec the 5 epochs after that (0–5
text_deduplicate, 6–10 json_flatten), then alternates ``specs[epoch % n]``;
``rotate`` alternates from epoch 0 (for short runs); ``all`` runs every spec in
every epoch. Which tools a generation holds is decided by ``evolve``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from labledger.events.toolgen import Genome, ImplStyle

CURRICULA = ("seed", "rotate", "all")
WARMUP_FIRST, WARMUP_EACH = 6, 5


class Trial(msgspec.Struct, frozen=True, kw_only=True):
    """One member of one (epoch, spec) generation: the genome to render and evaluate."""

    epoch: int
    spec_id: str
    member: int
    genome: Genome
    parent_tool_id: str | None = None

    @property
    def style(self) -> ImplStyle:
        """The genome's implementation style."""
        return self.genome.impl_style

    @property
    def key(self) -> str:
        """The trial's identity inside a run: ``e<epoch>-<spec>-m<member>``."""
        return generation_key(self.epoch, self.spec_id, self.member)


def generation_key(epoch: int, spec_id: str, member: int) -> str:
    """``e<epoch>-<spec>-m<member>``: a trial's key (its tool id's tail)."""
    return f"e{epoch}-{spec_id}-m{member}"


def specs_for_epoch(epoch: int, specs: Sequence[str], curriculum: str = "seed") -> list[str]:
    """The specs taught in ``epoch`` under ``curriculum`` (see the module docstring)."""
    if not specs:
        raise ValueError("no specs")
    if curriculum == "all":
        return list(specs)
    if curriculum == "rotate":
        return [specs[epoch % len(specs)]]
    if curriculum != "seed":
        raise ValueError(f"unknown curriculum {curriculum!r}; use one of {', '.join(CURRICULA)}")
    if epoch < WARMUP_FIRST:
        return [specs[0]]
    block = (epoch - WARMUP_FIRST) // WARMUP_EACH + 1
    if block < len(specs):
        return [specs[block]]
    return [specs[epoch % len(specs)]]


def schedule(epochs: int, specs: Sequence[str], curriculum: str) -> list[tuple[int, str]]:
    """Every (epoch, spec) generation of a run, in the order they run."""
    return [(e, s) for e in range(epochs) for s in specs_for_epoch(e, specs, curriculum)]
