"""Your own runs: metrics a training script logs through ``labledger.track``.

A tracked run is an ordinary run (``run.RunStarted`` with subsystem ``track``,
its parameters in ``config``, heartbeats, ``run.RunFinished``); what it adds
is its measurements. They arrive in batches — one :class:`MetricsLogged` per
flush, many points in each — so a script logging every step costs one durable
commit per flush, not one per step.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from labledger.events._base import Event, Record
from labledger.events._types import Count, Metrics

MAX_POINTS = 10_000
"""Points per event; the tracker flushes long before (see ``labledger.lab.tracking``)."""


class MetricPoint(Record, frozen=True, kw_only=True):
    """The values a script logged at one step (a name the script chose → a finite number)."""

    step: Count
    values: Metrics


class MetricsLogged(Event, frozen=True, kw_only=True):
    """One flush of a tracked run: its points since the last flush, in logging order."""

    TYPE = "track.MetricsLogged"
    VERSION = 1
    SUBSYSTEM = "track"

    points: Annotated[list[MetricPoint], msgspec.Meta(min_length=1, max_length=MAX_POINTS)]
