r"""Constrained field types shared by every event module.

msgspec does not validate on construction, only on decode; ``encode`` therefore
round-trips every event through its decoder, and these ``Meta`` constraints are
what that round trip checks. They also appear in the exported JSON Schemas.

Floats are bounded by ``±sys.float_info.max`` so NaN and infinity are refused:
JSON has no literal for them (msgspec writes ``null``), a float literal that
overflows (``1e400``) fails the range check, and NaN fails every comparison.

Patterns end in ``(?![\s\S])`` rather than ``$`` because Python's ``$`` (which
msgspec uses) also matches before a trailing newline.
"""

from __future__ import annotations

import sys
from typing import Annotated

import msgspec

_FMAX = sys.float_info.max
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Finite = Annotated[float, msgspec.Meta(ge=-_FMAX, le=_FMAX, description="A finite number.")]
NonNegative = Annotated[float, msgspec.Meta(ge=0.0, le=_FMAX, description="A finite number >= 0.")]
Positive = Annotated[float, msgspec.Meta(gt=0.0, le=_FMAX, description="A finite number > 0.")]
Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="A fraction in [0, 1].")]

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX, description="An integer >= 0.")]
PositiveCount = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX, description="An integer >= 1.")]

Name = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        pattern=r"^[^\s\x00](?:[^\x00\n]*[^\s\x00])?(?![\s\S])",
        description="A non-empty identifier without leading or trailing whitespace or NUL.",
    ),
]
# NUL is refused in every string: PostgreSQL text (where read models keep them) cannot hold it.
Text = Annotated[
    str, msgspec.Meta(max_length=8192, pattern=r"^[^\x00]*(?![\s\S])", description="Free text.")
]
Path = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=4096, pattern=r"^[^\x00]+(?![\s\S])", description="A file path."
    ),
]
Sha256 = Annotated[
    str,
    msgspec.Meta(
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        description="A lowercase hex SHA-256 digest.",
    ),
]
TypeName = Annotated[
    str,
    msgspec.Meta(
        max_length=128,
        pattern=r"^[a-z][a-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)+(?![\s\S])",
        description="A namespaced event type name such as 'esper.AdaptationCommand'.",
    ),
]

Scalar = Text | bool | Int64 | Finite | None
"""A JSON scalar: the values a genome parameter or a config entry may take."""

ConfigValue = Scalar | list[Scalar] | dict[Name, Scalar]
"""A config entry: a scalar, a list of scalars, or one level of named scalars."""

Params = dict[Name, Scalar]
"""Named scalar parameters (a D-REAM genome, a policy's hyper-parameters)."""

Metrics = dict[Name, Finite]
"""Named finite measurements."""

Shape = Annotated[list[Count], msgspec.Meta(max_length=16, description="A tensor shape.")]
