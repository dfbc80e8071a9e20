"""Deterministic input generators named by the specs (pure: a seed in, inputs out)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from labledger.lab.toolgen.specs import Inputs

_ALPHABET = "abcdefghijklmnopqrstuvwxyzAB é"


def _word(rng: random.Random, low: int = 1, high: int = 8) -> str:
    return "".join(rng.choice(_ALPHABET[:26]) for _ in range(rng.randint(low, high)))


def _lines(rng: random.Random, p: Inputs) -> list[Any]:
    vocabulary = ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 12)))]
    vocabulary += [_word(rng, 1, 16) for _ in range(max(1, p.vocabulary) - 1)]
    return [[rng.choice(vocabulary) for _ in range(p.size)]]


def _tree(rng: random.Random, depth: int, breadth: int) -> Any:
    roll = rng.random()
    if depth <= 0 or roll < 0.3:
        return rng.choice([rng.randint(-9, 99), _word(rng), None, True, 1.5, {}, []])
    if roll < 0.65:
        return [_tree(rng, depth - 1, breadth) for _ in range(rng.randint(1, breadth))]
    return {
        _word(rng, 1, 5): _tree(rng, depth - 1, breadth) for _ in range(rng.randint(1, breadth))
    }


def _nested(rng: random.Random, p: Inputs) -> list[Any]:
    return [{_word(rng, 1, 6) + str(i): _tree(rng, p.depth, 3) for i in range(p.size)}]


def _words(rng: random.Random, p: Inputs) -> list[Any]:
    words = [_word(rng, 1, 9) for _ in range(p.size)]
    return [words, _word(rng, p.prefix_length, p.prefix_length)]


GENERATORS: dict[str, Callable[[random.Random, Inputs], list[Any]]] = {
    "lines": _lines,
    "nested": _nested,
    "words": _words,
}


def generate(p: Inputs, count: int | None = None) -> list[list[Any]]:
    """``count`` (default ``p.count``) argument lists from ``p``'s generator and seed,
    then the spec's edge cases. The same parameters always give the same inputs."""
    rng = random.Random(p.seed)
    make = GENERATORS[p.generator]
    return [make(rng, p) for _ in range(p.count if count is None else count)] + [
        list(case) for case in p.edge_cases
    ]
