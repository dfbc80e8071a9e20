"""The tournament plan: which spec each epoch teaches (the seed's curriculum), which
styles compete, and which trials carry a seeded fault. Pure and deterministic.

Curriculum (seed ``001_…``, generalised to any number of specs): ``seed`` gives
the first spec epochs 0–5, each next spec the 5 epochs after that (0–5
text_deduplicate, 6–10 json_flatten), then alternates ``specs[epoch % n]``;
``rotate`` alternates from epoch 0 (for short runs); ``all`` runs every spec in
every epoch.

Faults: a seeded RNG (run seed, epoch) picks one trial of each epoch that
surely carries a fault, and gives every other trial the fault rate's chance,
so every tournament hands tools off to RepairLab.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec

from labledger.events.toolgen import ImplStyle
from labledger.lab.toolgen.specs import get_spec

CURRICULA = ("seed", "rotate", "all")
WARMUP_FIRST, WARMUP_EACH = 6, 5


class Trial(msgspec.Struct, frozen=True, kw_only=True):
    """One (epoch, spec, style) entry of the tournament, with its seeded fault."""

    epoch: int
    spec_id: str
    style: ImplStyle
    fault: str | None = None

    @property
    def key(self) -> str:
        """The trial's identity inside a run: ``e<epoch>-<spec>-<style>``."""
        return f"e{self.epoch}-{self.spec_id}-{self.style.value}"


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


def plan_epoch(
    epoch: int, specs: Sequence[str], *, seed: int, curriculum: str, fault_rate: float
) -> list[Trial]:
    """The epoch's trials: every fitting style of each taught spec, faults seeded."""
    slots = [
        (spec_id, style)
        for spec_id in specs_for_epoch(epoch, specs, curriculum)
        for style in get_spec(spec_id).fitting_styles
    ]
    rng = random.Random(f"toolgen/{seed}/{epoch}")
    sure = rng.randrange(len(slots))
    trials = []
    for n, (spec_id, style) in enumerate(slots):
        faults = get_spec(spec_id).faults_for(style)
        faulty = (n == sure or rng.random() < fault_rate) and bool(faults)
        fault = rng.choice(faults).id if faulty else None
        trials.append(Trial(epoch=epoch, spec_id=spec_id, style=style, fault=fault))
    return trials


def plan(
    epochs: int, specs: Sequence[str], *, seed: int, curriculum: str = "seed", fault_rate: float
) -> list[Trial]:
    """All trials of a run of ``epochs`` epochs, in the order they run."""
    return [
        trial
        for epoch in range(epochs)
        for trial in plan_epoch(
            epoch, specs, seed=seed, curriculum=curriculum, fault_rate=fault_rate
        )
    ]
