"""Meta-evolution (seed ``001_…``): D-REAM-style selection over ToolGen's genomes. Pure.

A genome is ``impl_style × anneal_gene`` (the seed's search space: the styles
that fit the spec, and 0.8 / 1.0 / 1.2) plus the code mutations applied to the
style's template (:mod:`mutate`). The first generation of a spec holds every
fitting style clean, then mutants of them. Each later generation is bred from
the spec's **elite archive**: every tool of the spec evaluated so far in the run
(RepairLab's challengers included), ranked by the leaderboard's keys —
fitness descending, ``median_ms`` ascending (not measured last), then the log
position of the evaluation — and cut to the best :data:`ELITES`. A child's
parent is the better of two elites drawn at random (a tournament of two); the
child may switch style (its mutations are then dropped: they belong to a
template), change its annealing gene, gain a mutation or lose its last one.
How many mutations it gains grows with its effective temperature (the epoch's
annealing temperature times its gene): hot genomes explore, cooled ones keep.

Everything random comes from ``random.Random`` seeded by (run seed, spec,
epoch), and the archive is read from the log, so the same seed and the same
recorded evaluations give the same population sequence, and a resumed run
breeds exactly the generation it would have bred.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec

from labledger.events.toolgen import Genome, ImplStyle
from labledger.lab.toolgen import mutate
from labledger.lab.toolgen.specs import get_spec, template_text

ANNEAL_GENES = (0.8, 1.0, 1.2)
ELITES = 3
P_RESTYLE = 0.2
P_RETEMPER = 0.3
P_MUTATE = 0.6
"""Chance of one more code mutation at effective temperature 1."""
P_REVERT = 0.25
"""Chance of dropping the last code mutation."""


class Scored(msgspec.Struct, frozen=True, kw_only=True):
    """One archived tool: what it is and how it scored (read from the log)."""

    tool_id: str
    genome: Genome
    fitness: float
    median_ms: float | None
    position: int
    """Log position of its latest evaluation (the last tie-break key)."""


def rank_key(s: Scored) -> tuple[float, bool, float, int]:
    """The leaderboard's order: fitness ↓, median_ms ↑ (unmeasured last), position ↑."""
    return (-s.fitness, s.median_ms is None, s.median_ms or 0.0, s.position)


def elites(archive: Sequence[Scored], n: int = ELITES) -> list[Scored]:
    """The ``n`` best of ``archive`` by :func:`rank_key`."""
    return sorted(archive, key=rank_key)[:n]


def rng_for(seed: int, spec_id: str, epoch: int) -> random.Random:
    """The generation's random source: a pure function of (seed, spec, epoch)."""
    return random.Random(f"toolgen-evolve/{seed}/{spec_id}/{epoch}")


def _mutated(spec_id: str, genome: Genome, rng: random.Random) -> Genome:
    """``genome`` with one more code mutation, at a site of the code as it is."""
    code = mutate.apply_all(template_text(spec_id, genome.impl_style), genome.mutations)
    options = [
        f"{op}@{k}" for op in mutate.GENERATOR_OPERATORS for k in range(len(mutate.sites(code, op)))
    ]
    if not options:
        return genome
    return msgspec.structs.replace(genome, mutations=[*genome.mutations, rng.choice(options)])


def breed(spec_id: str, parent: Genome, rng: random.Random, temp: float) -> Genome:
    """A child of ``parent`` (see the module docstring)."""
    styles = get_spec(spec_id).fitting_styles
    child = parent
    if rng.random() < P_RESTYLE and len(styles) > 1:
        style = rng.choice([s for s in styles if s != parent.impl_style])
        child = Genome(impl_style=style, anneal_gene=child.anneal_gene, mutations=[])
    if rng.random() < P_RETEMPER:
        gene = rng.choice([g for g in ANNEAL_GENES if g != child.anneal_gene])
        child = msgspec.structs.replace(child, anneal_gene=gene)
    if child.mutations and rng.random() < P_REVERT:
        child = msgspec.structs.replace(child, mutations=child.mutations[:-1])
    elif rng.random() < min(1.0, P_MUTATE * temp):
        child = _mutated(spec_id, child, rng)
    if child == parent:  # a copy teaches nothing: vary it once more
        child = _mutated(spec_id, child, rng)
    return child


def first_generation(spec_id: str, size: int, rng: random.Random) -> list[Genome]:
    """Every fitting style clean (gene 1.0), then single mutants of random styles."""
    styles: Sequence[ImplStyle] = get_spec(spec_id).fitting_styles
    genomes = [Genome(impl_style=s, anneal_gene=1.0, mutations=[]) for s in styles][:size]
    while len(genomes) < size:
        seedling = Genome(
            impl_style=rng.choice(list(styles)),
            anneal_gene=rng.choice(ANNEAL_GENES),
            mutations=[],
        )
        genomes.append(_mutated(spec_id, seedling, rng))
    return genomes


def next_generation(
    spec_id: str, archive: Sequence[Scored], size: int, rng: random.Random, temp: float
) -> tuple[list[tuple[Genome, str | None]], list[str]]:
    """The next generation of ``spec_id``: (genome, parent tool id) per child, and the
    elite ids selection drew from. An empty archive gives the first generation.

    Args:
        spec_id: the spec.
        archive: the spec's evaluated tools so far in the run (challengers included).
        size: how many children.
        rng: from :func:`rng_for`.
        temp: the epoch's annealing temperature (scaled by each parent's gene).
    """
    if not archive:
        return [(g, None) for g in first_generation(spec_id, size, rng)], []
    pool = elites(archive)
    children: list[tuple[Genome, str | None]] = []
    for _ in range(size):
        a, b = rng.choice(pool), rng.choice(pool)
        parent = min(a, b, key=rank_key)
        child = breed(spec_id, parent.genome, rng, temp * parent.genome.anneal_gene)
        children.append((child, parent.tool_id))
    return children, [e.tool_id for e in pool]
