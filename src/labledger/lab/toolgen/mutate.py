"""Code mutation operators over the AST: how ToolGen varies a tool and RepairLab edits one.

Each operator finds its *sites* in a tool's source (nodes it can rewrite, in
source order) and rewrites one of them. A mutation is written ``operator@site``
(the site's index in that order, counted on the code as it is when the
mutation is applied), so a genome's mutation list replays to the same bytes.
Edits replace only the node's source segment, so comments, the SPDX header and
line numbers elsewhere stay as they were (RepairLab's guidance uses the lines).

ToolGen's operators (:data:`GENERATOR_OPERATORS`) are the usual mutation-testing
set: swapped and negated comparisons, boundary changes, off-by-one constants, a
loop that drops its last item, alternative library calls, a dropped operand of
``and``/``or`` (a dropped case), and a slower container (a list where a set
was: correct, but linear lookups). RepairLab searches their inverses
(:data:`REPAIR_OPERATORS`). A dropped operand has no inverse there: the lost
condition is not in the code any more, so RepairLab cannot find it back.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass

Edit = tuple[int, int, str]
"""(start byte, end byte, replacement) in the UTF-8 source."""

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.Gt,
    ast.Gt: ast.Lt,
    ast.LtE: ast.GtE,
    ast.GtE: ast.LtE,
}
_NEGATE: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BOUNDARY: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
}
_ALTERNATIVES = {
    "bisect_left": "bisect_right",
    "bisect_right": "bisect_left",
    "startswith": "endswith",
    "endswith": "startswith",
    "min": "max",
    "max": "min",
    "lower": "upper",
    "upper": "lower",
}


class MutationError(ValueError):
    """A mutation names an operator or a site the code does not have."""


@dataclass(frozen=True)
class Site:
    """Where an operator applies: the node, and for ``drop_operand`` which operand."""

    node: ast.AST
    part: int = 0

    @property
    def line(self) -> int:
        return int(getattr(self.node, "lineno", 0))


@dataclass(frozen=True)
class Operator:
    """A named rewrite: where it applies and the edits it makes there."""

    name: str
    sites: Callable[[ast.Module], list[Site]]
    edits: Callable[[Site, ast.Module], list[Edit]]


def _ordered(nodes: Iterator[ast.AST]) -> list[ast.AST]:
    return sorted(nodes, key=lambda n: (n.lineno, n.col_offset))  # type: ignore[attr-defined]


def _offsets(code: bytes) -> list[int]:
    starts, total = [0], 0
    for line in code.splitlines(keepends=True):
        total += len(line)
        starts.append(total)
    return starts


_CODE: dict[int, tuple[bytes, list[int]]] = {}


def _span(node: ast.AST, tree: ast.Module) -> tuple[int, int]:
    starts = _CODE[id(tree)][1]
    n: ast.expr = node  # type: ignore[assignment]
    start = starts[n.lineno - 1] + n.col_offset
    end = starts[(n.end_lineno or n.lineno) - 1] + (n.end_col_offset or 0)
    return start, end


def _replace(node: ast.AST, tree: ast.Module, new: ast.AST) -> list[Edit]:
    start, end = _span(node, tree)
    return [(start, end, ast.unparse(new))]


def _compare_sites(
    table: dict[type[ast.cmpop], type[ast.cmpop]],
) -> Callable[[ast.Module], list[Site]]:
    def sites(tree: ast.Module) -> list[Site]:
        found = (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Compare) and len(n.ops) == 1 and type(n.ops[0]) in table
        )
        return [Site(n) for n in _ordered(found)]

    return sites


def _compare_edits(
    table: dict[type[ast.cmpop], type[ast.cmpop]],
) -> Callable[[Site, ast.Module], list[Edit]]:
    def edits(site: Site, tree: ast.Module) -> list[Edit]:
        node = site.node
        assert isinstance(node, ast.Compare)
        new = ast.Compare(
            left=node.left, ops=[table[type(node.ops[0])]()], comparators=node.comparators
        )
        return _replace(node, tree, new)

    return edits


def _int_constants(tree: ast.Module) -> list[Site]:
    found = (n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) is int)
    return [Site(n) for n in _ordered(found)]


def _shift(delta: int) -> Callable[[Site, ast.Module], list[Edit]]:
    def edits(site: Site, tree: ast.Module) -> list[Edit]:
        node = site.node
        assert isinstance(node, ast.Constant) and isinstance(node.value, int)
        return _replace(node, tree, ast.Constant(node.value + delta))

    return edits


def _is_drop_last(node: ast.AST) -> bool:
    if not isinstance(node, ast.Subscript) or not isinstance(node.slice, ast.Slice):
        return False
    s = node.slice
    upper = s.upper
    minus_one = (
        isinstance(upper, ast.UnaryOp)
        and isinstance(upper.op, ast.USub)
        and isinstance(upper.operand, ast.Constant)
        and upper.operand.value == 1
    )
    return s.lower is None and s.step is None and minus_one


def _loop_sites(tree: ast.Module) -> list[Site]:
    found = (n.iter for n in ast.walk(tree) if isinstance(n, ast.For) and not _is_drop_last(n.iter))
    return [Site(n) for n in _ordered(found)]


def _drop_last(site: Site, tree: ast.Module) -> list[Edit]:
    start, end = _span(site.node, tree)
    code = _CODE[id(tree)][0]
    return [(start, end, f"({code[start:end].decode()})[:-1]")]


def _trimmed_sites(tree: ast.Module) -> list[Site]:
    return [Site(n) for n in _ordered(n for n in ast.walk(tree) if _is_drop_last(n))]


def _restore_last(site: Site, tree: ast.Module) -> list[Edit]:
    node = site.node
    assert isinstance(node, ast.Subscript)
    return _replace(node, tree, node.value)


def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _alternative_sites(tree: ast.Module) -> list[Site]:
    found = (
        n.func
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and _call_name(n.func) in _ALTERNATIVES
    )
    return [Site(n) for n in _ordered(found)]


def _alternative(site: Site, tree: ast.Module) -> list[Edit]:
    node = site.node
    name = _call_name(node)
    assert name is not None
    end = _span(node, tree)[1]
    # The name is the segment's tail (``x.startswith``, ``min``): replace only it.
    return [(end - len(name.encode()), end, _ALTERNATIVES[name])]


def _operand_sites(tree: ast.Module) -> list[Site]:
    boolops = _ordered(n for n in ast.walk(tree) if isinstance(n, ast.BoolOp))
    return [Site(n, k) for n in boolops for k in range(len(n.values))]  # type: ignore[attr-defined]


def _drop_operand(site: Site, tree: ast.Module) -> list[Edit]:
    node = site.node
    assert isinstance(node, ast.BoolOp)
    rest = [v for k, v in enumerate(node.values) if k != site.part]
    new = rest[0] if len(rest) == 1 else ast.BoolOp(op=node.op, values=rest)
    return _replace(node, tree, new)


def _set_assignments(tree: ast.Module) -> list[Site]:
    found = (
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and isinstance(n.value, ast.Call)
        and isinstance(n.value.func, ast.Name)
        and n.value.func.id == "set"
        and not n.value.args
    )
    return [Site(n) for n in _ordered(found)]


def _list_container(site: Site, tree: ast.Module) -> list[Edit]:
    node = site.node
    assert isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    name = node.targets[0].id
    edits = _replace(node.value, tree, ast.List(elts=[]))
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Attribute)
            and n.attr == "add"
            and isinstance(n.value, ast.Name)
            and n.value.id == name
        ):
            end = _span(n, tree)[1]
            edits.append((end - len("add"), end, "append"))
    return edits


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("swap_compare", _compare_sites(_FLIP), _compare_edits(_FLIP)),
        Operator("negate_compare", _compare_sites(_NEGATE), _compare_edits(_NEGATE)),
        Operator("boundary", _compare_sites(_BOUNDARY), _compare_edits(_BOUNDARY)),
        Operator("off_by_one_up", _int_constants, _shift(+1)),
        Operator("off_by_one_down", _int_constants, _shift(-1)),
        Operator("drop_last", _loop_sites, _drop_last),
        Operator("restore_last", _trimmed_sites, _restore_last),
        Operator("alt_call", _alternative_sites, _alternative),
        Operator("drop_operand", _operand_sites, _drop_operand),
        Operator("list_container", _set_assignments, _list_container),
    )
}
GENERATOR_OPERATORS = (
    "swap_compare",
    "negate_compare",
    "boundary",
    "off_by_one_up",
    "off_by_one_down",
    "drop_last",
    "alt_call",
    "drop_operand",
    "list_container",
)
"""What ToolGen's variation draws from."""
REPAIR_OPERATORS = (
    "swap_compare",
    "negate_compare",
    "boundary",
    "off_by_one_up",
    "off_by_one_down",
    "restore_last",
    "alt_call",
)
"""RepairLab's edit set: the inverses of the faulting operators (no drop_operand)."""


def _parsed(code: str) -> ast.Module:
    tree = ast.parse(code)
    raw = code.encode()
    _CODE.clear()  # one tree at a time: the cache only maps node offsets to bytes
    _CODE[id(tree)] = (raw, _offsets(raw))
    return tree


def sites(code: str, operator: str) -> list[int]:
    """The source line of each site of ``operator`` in ``code``, in site order."""
    return [s.line for s in OPERATORS[operator].sites(_parsed(code))]


def apply(code: str, mutation: str) -> str:
    """``code`` with one mutation ``operator@site`` applied.

    Raises:
        MutationError: unknown operator, or no such site.
    """
    name, _, index = mutation.partition("@")
    if name not in OPERATORS or not index.isdigit():
        raise MutationError(f"unknown mutation {mutation!r}")
    tree = _parsed(code)
    found = OPERATORS[name].sites(tree)
    if int(index) >= len(found):
        raise MutationError(f"{mutation!r}: the code has {len(found)} {name} sites")
    raw = _CODE[id(tree)][0]
    for start, end, text in sorted(OPERATORS[name].edits(found[int(index)], tree), reverse=True):
        raw = raw[:start] + text.encode() + raw[end:]
    return raw.decode()


def apply_all(code: str, mutations: list[str]) -> str:
    """``code`` with each mutation applied in order (see :func:`apply`)."""
    for mutation in mutations:
        code = apply(code, mutation)
    return code
