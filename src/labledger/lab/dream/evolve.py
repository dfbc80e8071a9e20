"""The evolutionary loop's decisions: plain, seeded functions over genomes and fitness.

No I/O, no clock: generation ``g`` of a run is a function of the run's seed
and the fitness of generation ``g − 1`` (read back from the log), so a resumed
run rebuilds exactly the population the dead attempt was measuring.

- Genomes take one value per gene from the gene's declared choices
  (``regimes.yaml``); genes are visited in declaration order.
- Fitness is the candidate's ``score_v2`` (see ``projections.dream_stats``);
  an unsafe candidate (``"-inf"``) or one that cannot be scored (``None``:
  no ``perf`` in some regime) has fitness −inf.
- Next generation: the ``elite`` best candidates with finite fitness are
  copied unchanged; every other child is the uniform crossover of two
  tournament winners (best of ``tournament`` drawn at random, ties to the
  lower index), then each gene moves to a neighbouring choice (or, at the
  ends, the only neighbour) with probability ``mutation_rate``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from labledger.lab.dream.config import Choice, Evolution

Genome = dict[str, Choice]
Space = Mapping[str, Sequence[Choice]]


def rng_for(seed: int, generation: int) -> random.Random:
    """The random stream of one generation of a run (string-seeded: stable across versions)."""
    return random.Random(f"dream:{seed}:{generation}")


def initial_population(space: Space, size: int, rng: random.Random) -> list[Genome]:
    """``size`` genomes, each gene drawn uniformly from its choices."""
    return [
        {gene: rng.choice(list(choices)) for gene, choices in space.items()} for _ in range(size)
    ]


def fitness(score_v2: float | str | None) -> float:
    """A pack's ``score_v2`` as a number to maximise: −inf when unsafe or unscored."""
    if isinstance(score_v2, int | float) and math.isfinite(score_v2):
        return float(score_v2)
    return -math.inf


def ranked(scores: Sequence[float]) -> list[int]:
    """Indices of ``scores``, best first; ties keep the lower index first."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def best_index(scores: Sequence[float]) -> int | None:
    """The index of the best finite score, or ``None`` when no candidate has one."""
    order = ranked(scores)
    return order[0] if order and math.isfinite(scores[order[0]]) else None


def _tournament(scores: Sequence[float], k: int, rng: random.Random) -> int:
    drawn = [rng.randrange(len(scores)) for _ in range(k)]
    return min(drawn, key=lambda i: (-scores[i], i))


def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
    """Uniform crossover: each gene from ``a`` or ``b`` with probability one half."""
    return {gene: (a[gene] if rng.random() < 0.5 else b[gene]) for gene in a}


def mutate(genome: Genome, space: Space, rate: float, rng: random.Random) -> Genome:
    """Each gene, with probability ``rate``, steps to a neighbouring choice.

    Choices are ordered (threads 1, 2, 4, 8…), so a step keeps the child near
    its parent; a value no longer among the choices restarts at a random one.
    """
    child = dict(genome)
    for gene, choices in space.items():
        options = list(choices)
        if len(options) < 2 or rng.random() >= rate:
            continue
        if child.get(gene) not in options:
            child[gene] = rng.choice(options)
            continue
        at = options.index(child[gene])
        step = rng.choice([-1, 1]) if 0 < at < len(options) - 1 else (1 if at == 0 else -1)
        child[gene] = options[at + step]
    return child


def next_population(
    parents: Sequence[Genome],
    scores: Sequence[float],
    space: Space,
    size: int,
    evolution: Evolution,
    rng: random.Random,
) -> list[Genome]:
    """The next generation from the measured one (see the module docstring).

    Args:
        parents: the genomes of the generation just measured, in candidate order.
        scores: their fitness, aligned with ``parents``.
        space: the genes and their choices.
        size: the population size.
        evolution: elite count, tournament size, mutation rate.
        rng: :func:`rng_for` of the generation being made.

    Raises:
        ValueError: ``parents`` is empty or not aligned with ``scores``.
    """
    if not parents or len(parents) != len(scores):
        raise ValueError("need one score per parent and at least one parent")
    elite = [dict(parents[i]) for i in ranked(scores) if math.isfinite(scores[i])]
    children = elite[: min(evolution.elite, size)]
    while len(children) < size:
        a = parents[_tournament(scores, evolution.tournament, rng)]
        b = parents[_tournament(scores, evolution.tournament, rng)]
        children.append(mutate(crossover(a, b, rng), space, evolution.mutation_rate, rng))
    return children
