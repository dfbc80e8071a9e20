"""Specs and templates as data, shipped inside the package.

``specs/<id>.yaml`` describes a tool: its function and signature, which
implementation styles fit (or why one does not), reference tests (input →
expected output), how to generate benchmark and robustness inputs from a seed
(the benchmark is sized so that medians are milliseconds), and a plain
reference implementation: the robustness oracle, and the speed every tool is
compared with. ``templates/<id>/<style>.py.tmpl`` holds one clean
implementation per fitting style; variation comes from ``mutate``. Everything is read through
:mod:`importlib.resources`, so it works from the source tree and from a wheel.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import msgspec
import yaml

from labledger.events.toolgen import ImplStyle

FITS = "fits"


class Case(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One reference test: call the function with ``args``, expect ``expected``."""

    args: list[Any]
    expected: Any


class Inputs(msgspec.Struct, frozen=True, kw_only=True):
    """How to generate inputs deterministically (see ``_inputs.py``)."""

    generator: str
    seed: int
    size: int
    count: int = 1
    vocabulary: int = 100
    depth: int = 3
    prefix_length: int = 1
    edge_cases: tuple[list[Any], ...] = ()


class Spec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tool to synthesize, with its tests, inputs and reference implementation."""

    id: str
    description: str
    function: str
    signature: str
    styles: dict[ImplStyle, str]
    """``fits`` or the reason the style cannot fit the spec."""
    tests: tuple[Case, ...]
    benchmark: Inputs
    robustness: Inputs
    reference: str

    @property
    def fitting_styles(self) -> tuple[ImplStyle, ...]:
        """The styles with a template, in the catalog's order (``set`` first)."""
        return tuple(s for s in ImplStyle if self.styles.get(s) == FITS)

    @property
    def path(self) -> str:
        """The spec's path inside the package (what a handoff's ``spec_path`` names)."""
        return f"labledger/lab/toolgen/specs/{self.id}.yaml"


def _root() -> Traversable:
    return resources.files("labledger.lab.toolgen")


@functools.cache
def load_specs() -> dict[str, Spec]:
    """Every spec shipped in ``specs/``, by id (cached: data files do not change)."""
    found: dict[str, Spec] = {}
    for entry in sorted(_root().joinpath("specs").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            spec = msgspec.convert(yaml.safe_load(entry.read_text("utf-8")), Spec)
            if entry.name != f"{spec.id}.yaml":
                raise ValueError(f"spec file {entry.name} holds spec {spec.id!r}")
            found[spec.id] = spec
    return found


def get_spec(spec_id: str) -> Spec:
    """The spec ``spec_id``.

    Raises:
        KeyError: no such spec (the message lists the known ones).
    """
    specs = load_specs()
    if spec_id not in specs:
        raise KeyError(f"unknown spec {spec_id!r}; known: {', '.join(sorted(specs))}")
    return specs[spec_id]


@functools.cache
def template_text(spec_id: str, style: ImplStyle) -> str:
    """The clean template of (spec, style), without the generated header."""
    spec = get_spec(spec_id)
    if style not in spec.fitting_styles:
        raise ValueError(f"style {style} does not fit {spec_id}: {spec.styles.get(style)}")
    return _root().joinpath("templates", spec_id, f"{style.value}.py.tmpl").read_text("utf-8")


@functools.cache
def header_template() -> str:
    """The SPDX and provenance header stamped on every generated tool."""
    return _root().joinpath("templates", "_header.tmpl").read_text("utf-8")
