"""Decoding a payload without searching every regex again: strings that passed are remembered.

msgspec checks a string's ``pattern`` with ``re.search`` each time it decodes
one; in a telemetry packet that is 14 searches, three quarters of the decode
(8 us of 10). Most of those strings repeat from event to event (metric names,
sources, indicator keys). So a payload is first decoded with a *twin* of its
class: the same fields, defaults and constraints, every ``pattern`` left
out. Each patterned string of the result is then checked against its
pattern, and a value that passed that pattern before is not searched again.

Refusals are never cached and never phrased here. When the twin refuses, or
a string fails its pattern, the caller decodes with the real class and
raises *its* error, word for word (:func:`fast_decode` returns ``None``).
Accepting is exact too: the twin keeps every other constraint, so "the
twin accepts and every patterned string matches" is "the real class
accepts", and both encode to the same canonical bytes. A class the twin
cannot copy faithfully (a ``__post_init__`` check, an annotation this
module does not know) has no twin and always takes the strict path. The
published JSON Schemas are the real classes'; the twin is private.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

Check = Callable[[Any], bool]
"""True when every patterned string inside the value matches its pattern."""

MAX_REMEMBERED = 16_384
"""Values remembered per pattern; past that, new values are searched every time."""
MAX_REMEMBERED_LENGTH = 256

_EXACT: dict[str, Callable[[str], bool]] = {
    # ``^[^\x00]*(?![\s\S])``: ``^`` pins the start, the class runs to the first NUL,
    # and the lookahead demands the end there: the same as "no NUL anywhere".
    r"^[^\x00]*(?![\s\S])": lambda s: "\x00" not in s,
    r"^[^\x00]+(?![\s\S])": lambda s: s != "" and "\x00" not in s,
}
"""Patterns whose search is a plain string test (tests/events check the equivalence)."""


class _Unsupported(Exception):
    """The twin could not copy this annotation faithfully: use the real class."""


def _string_check(pattern: str) -> Check:
    exact = _EXACT.get(pattern)
    if exact is not None:
        return exact
    search = re.compile(pattern).search  # what msgspec runs on each value
    passed: set[str] = set()

    def check(value: str) -> bool:
        if value in passed:
            return True
        if search(value) is None:
            return False  # never remembered: the strict decoder words the refusal
        if len(passed) < MAX_REMEMBERED and len(value) <= MAX_REMEMBERED_LENGTH:
            passed.add(value)
        return True

    return check


def _without_pattern(meta: msgspec.Meta) -> msgspec.Meta:
    kept = {
        name: getattr(meta, name)
        for name in (
            "gt",
            "ge",
            "lt",
            "le",
            "multiple_of",
            "min_length",
            "max_length",
            "tz",
            "title",
            "description",
            "examples",
            "extra_json_schema",
            "extra",
        )
        if getattr(meta, name) is not None
    }
    return msgspec.Meta(**kept)


READ_TWINS: dict[type, type] = {}
"""Each read twin (a subclass, see :class:`_Twins`) → the real class it stands for."""


def _alike(real: type[msgspec.Struct]) -> dict[str, Any]:
    """Equality and hash of a read twin: those of the real class, field for field."""
    astuple = msgspec.structs.astuple

    def __eq__(self: Any, other: object) -> bool:
        if isinstance(other, real):
            return astuple(self) == astuple(other)
        return NotImplemented

    def __ne__(self: Any, other: object) -> bool:
        if isinstance(other, real):
            return astuple(self) != astuple(other)
        return NotImplemented

    def __hash__(self: Any) -> int:  # msgspec's own hash depends on the type
        return hash(real(**msgspec.structs.asdict(self)))

    return {"__eq__": __eq__, "__ne__": __ne__, "__hash__": __hash__}


class _Twins:
    """Builds twins without patterns.

    ``subclass``: each twin is a *read twin*, a subclass of its real class that
    only re-declares the patterned fields: ``isinstance``, ``match``, the
    name, the repr, equality, hash and encoding are the real class's, so a
    reader cannot tell it apart (the log's read path, issue #19). Otherwise a
    twin is a free-standing struct, for validation (its value is only encoded).
    """

    def __init__(self, *, subclass: bool = False) -> None:
        self.subclass = subclass
        self.structs: dict[type, tuple[Any, Check | None]] = {}

    def annotation(self, tp: Any) -> tuple[Any, Check | None]:
        """The twin of an annotation and the check of its patterned strings (None: none)."""
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *metas = typing.get_args(tp)
            twin, check = self.annotation(base)
            new_metas: list[Any] = []
            for meta in metas:
                if isinstance(meta, msgspec.Meta) and meta.pattern is not None:
                    if check is not None or twin is not str:
                        raise _Unsupported(tp)
                    check = _string_check(meta.pattern)
                    meta = _without_pattern(meta)
                new_metas.append(meta)
            if check is None:
                return tp, None
            return typing.Annotated[(twin, *new_metas)], check
        if origin in (types.UnionType, typing.Union):
            return self.union(typing.get_args(tp))
        if origin in (list, set, frozenset):
            (item,) = typing.get_args(tp)
            twin, check = self.annotation(item)
            if check is None:
                return tp, None
            return origin[twin], _each(check)
        if origin is dict:
            key, value = typing.get_args(tp)
            (key_twin, key_check), (value_twin, value_check) = (
                self.annotation(key),
                self.annotation(value),
            )
            if key_check is None and value_check is None:
                return tp, None
            return dict[key_twin, value_twin], _items(key_check, value_check)  # type: ignore[valid-type]
        if origin is typing.Literal:
            return tp, None
        if origin is not None:
            raise _Unsupported(tp)  # tuples and the rest: no Event uses them yet
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            return self.struct(tp)
        if tp is None or tp is type(None) or isinstance(tp, type):
            return tp, None  # str, int, float, bool, enums, datetime...: no pattern
        raise _Unsupported(tp)

    def union(self, members: tuple[Any, ...]) -> tuple[Any, Check | None]:
        twins = [self.annotation(m) for m in members]
        by_type: dict[type, Check] = {}
        for member, (twin, check) in zip(members, twins, strict=True):
            if check is not None:
                runtime = _runtime_type(member, twin)
                if runtime in by_type:
                    raise _Unsupported(members)  # two checked members of one Python type
                by_type[runtime] = check
        if not by_type:
            return typing.Union[members], None  # noqa: UP007  (members as a tuple)

        def dispatch(value: Any) -> bool:
            found = by_type.get(type(value))
            return found is None or found(value)

        return typing.Union[tuple(t for t, _ in twins)], dispatch  # noqa: UP007

    def struct(self, cls: type[msgspec.Struct]) -> tuple[Any, Check | None]:
        if cls in self.structs:
            return self.structs[cls]
        self.structs[cls] = (cls, None)  # a recursive reference: not expected, kept strict
        fields = msgspec.structs.fields(cls)
        twins = [self.annotation(f.type) for f in fields]
        checks = [(f.name, c) for f, (_, c) in zip(fields, twins, strict=True) if c is not None]
        if not checks:
            return cls, None
        if any("__post_init__" in k.__dict__ for k in cls.__mro__ if k is not msgspec.Struct):
            raise _Unsupported(cls)  # the twin would skip that check
        config = cls.__struct_config__
        specs: list[Any] = []
        for f, (twin, _) in zip(fields, twins, strict=True):
            if self.subclass and twin is f.type:
                continue  # inherited as it is
            if f.default is not msgspec.NODEFAULT:
                specs.append((f.name, twin, f.default))
            elif f.default_factory is not msgspec.NODEFAULT:
                specs.append((f.name, twin, msgspec.field(default_factory=f.default_factory)))
            else:
                specs.append((f.name, twin))
        options: dict[str, Any] = {
            "tag_field": config.tag_field,
            "tag": config.tag,
            "rename": {f.name: f.encode_name for f in fields},
            "omit_defaults": config.omit_defaults,
            "forbid_unknown_fields": config.forbid_unknown_fields,
            "frozen": config.frozen,
            "kw_only": True,
            "array_like": config.array_like,
        }
        if self.subclass:
            twin_cls = msgspec.defstruct(
                cls.__name__,
                specs,
                bases=(cls,),
                module=cls.__module__,
                namespace=_alike(cls),
                **options,
            )
            twin_cls.__qualname__ = cls.__qualname__
            READ_TWINS[twin_cls] = cls
        else:
            twin_cls = msgspec.defstruct(f"{cls.__name__}Twin", specs, **options)

        def check(value: Any) -> bool:
            for name, field_check in checks:  # noqa: SIM110  (a loop: no generator per call)
                if not field_check(getattr(value, name)):
                    return False
            return True

        self.structs[cls] = (twin_cls, check)
        return self.structs[cls]


def _runtime_type(member: Any, twin: Any) -> type:
    """The Python type a decoded value of this union member has."""
    origin = typing.get_origin(twin)
    if origin is typing.Annotated:
        return _runtime_type(member, typing.get_args(twin)[0])
    if origin in (list, set, frozenset, dict):
        return typing.cast(type, origin)
    if isinstance(twin, type):
        return twin
    raise _Unsupported(member)


def _each(check: Check) -> Check:
    def each(values: Any) -> bool:
        for v in values:  # noqa: SIM110  (a loop: no generator per call)
            if not check(v):
                return False
        return True

    return each


def _items(key_check: Check | None, value_check: Check | None) -> Check:
    def items(mapping: dict[Any, Any]) -> bool:
        for k, v in mapping.items():
            if key_check is not None and not key_check(k):
                return False
            if value_check is not None and not value_check(v):
                return False
        return True

    return items


class FastDecoder:
    """The twin decoder of one class, or nothing to gain (``decode`` then always declines)."""

    __slots__ = ("_check", "_decode")

    def __init__(self, cls: type[msgspec.Struct], *, subclass: bool = False) -> None:
        """``subclass``: decode into read twins (:class:`_Twins`), for readers of the log."""
        self._decode: Callable[[bytes], Any] | None = None
        self._check: Check | None = None
        try:
            twin, check = _Twins(subclass=subclass).struct(cls)
        except _Unsupported:
            return
        if check is not None:
            self._decode, self._check = msgspec.json.Decoder(twin).decode, check

    @property
    def active(self) -> bool:
        return self._decode is not None

    def decode(self, data: bytes) -> Any | None:
        """The twin struct if ``data`` is valid for the real class; None: ask the real class."""
        if self._decode is None or self._check is None:
            return None
        try:
            value = self._decode(data)
        except (msgspec.DecodeError, RecursionError):
            return None
        return value if self._check(value) else None
