"""Synthesis: render a tool from its genome, stamp it, and describe it in an SBOM.

A genome's style picks the template, its mutations are applied to it in order
(:mod:`mutate`). Pure: the same (spec, genome, epoch) always gives the same
bytes, so a tool's ``code_sha256`` is reproducible and a resumed run re-derives it.
"""

from __future__ import annotations

import ast
import hashlib
import string
import sys

import msgspec

from labledger._version import __version__
from labledger.events.toolgen import Budgets, Genome, ImplStyle
from labledger.lab.toolgen import mutate
from labledger.lab.toolgen.specs import get_spec, header_template, template_text

LICENSE = "MIT"
GENERATOR = "labledger.lab.toolgen"
_encode = msgspec.json.Encoder(order="sorted").encode


def render(spec_id: str, genome: Genome, epoch: int, budgets: Budgets) -> str:
    """The tool's source: the SPDX/provenance header, then the mutated template.

    Raises:
        MutationError: a mutation does not fit the template (a corrupt genome).
    """
    header = string.Template(header_template()).substitute(
        license=LICENSE,
        generator_version=__version__,
        spec_id=spec_id,
        impl_style=genome.impl_style.value,
        epoch=epoch,
        timeout_ms=f"{budgets.timeout_ms:g}",
        memory_mb=f"{budgets.memory_mb:g}",
    )
    return header + mutate.apply_all(template_text(spec_id, genome.impl_style), genome.mutations)


def imports_of(code: str) -> list[str]:
    """The top-level modules ``code`` imports, sorted (its SBOM dependencies)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".", 1)[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".", 1)[0])
    return sorted(names)


def sbom(
    *,
    tool_id: str,
    spec_id: str,
    style: ImplStyle,
    epoch: int,
    budgets: Budgets,
    code: str,
    mutations: list[str],
    anneal_gene: float = 1.0,
    lineage: str = "original",
) -> bytes:
    """The SBOM of a generated tool, canonical JSON (deterministic: no timestamps —
    the event that references it carries the time)."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    doc = {
        "sbom_version": 1,
        "name": tool_id,
        "license": LICENSE,
        "generator": {"name": GENERATOR, "version": __version__},
        "spec": {"id": spec_id, "path": get_spec(spec_id).path},
        "impl_style": style.value,
        "epoch": epoch,
        "constraints": {"timeout_ms": budgets.timeout_ms, "memory_mb": budgets.memory_mb},
        "template_sha256": hashlib.sha256(template_text(spec_id, style).encode()).hexdigest(),
        "mutations": mutations,
        "anneal_gene": anneal_gene,
        "lineage": lineage,
        "files": [{"path": "tool.py", "sha256": hashlib.sha256(code.encode()).hexdigest()}],
        "dependencies": [
            {"name": name, "kind": "python-stdlib", "python": python} for name in imports_of(code)
        ],
    }
    return _encode(doc)
