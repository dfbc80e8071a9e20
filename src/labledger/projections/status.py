"""Projection status: version, checkpoint, head, lag in events and seconds, stalls.

A projection is *stalled* when it is behind and has not moved for longer
than ``stall_after_s`` while the log kept growing — the complaint users of
other event stores make most: projections that stop silently.
"""

from __future__ import annotations

import time

import msgspec

from labledger.projections import checkpoint as cps
from labledger.projections.engine import ProjectionEngine

DEFAULT_STALL_AFTER_S = 60.0


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    code_version: int
    built_version: int | None
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    stalled: bool
    state: str
    """``current``, ``behind``, ``stalled``, ``not built`` or ``needs rebuild``."""


def _recorded_at(engine: ProjectionEngine, position: int) -> int | None:
    if position <= 0:
        return None
    found = next(iter(engine.target.read_all(position, limit=1)), None)
    return found.recorded_at_us if found is not None and found.position == position else None


def status(
    engine: ProjectionEngine, *, stall_after_s: float = DEFAULT_STALL_AFTER_S
) -> list[ProjectionStatus]:
    head = engine.source.head()
    head_at = _recorded_at(engine, head)
    with engine.target.read() as conn:
        checkpoints = cps.load_all(conn)
    now_us = time.time_ns() // 1000
    out = []
    for name in sorted(engine.projections):
        proj = engine.projections[name]
        cp = checkpoints.get(name)
        position = cp.position if cp else 0
        lag = max(0, head - position)
        cp_at = _recorded_at(engine, position)
        lag_s = ((head_at or 0) - (cp_at or (head_at or 0))) / 1e6 if lag else 0.0
        idle_s = (now_us - cp.updated_at_us) / 1e6 if cp else 0.0
        stalled = bool(lag and cp and idle_s > stall_after_s)
        if cp is None:
            state = "not built"
        elif cp.version != proj.version:
            state = "needs rebuild"
        elif stalled:
            state = "stalled"
        else:
            state = "behind" if lag else "current"
        out.append(
            ProjectionStatus(
                name=name,
                code_version=proj.version,
                built_version=cp.version if cp else None,
                checkpoint=position,
                head=head,
                lag_events=lag,
                lag_seconds=max(0.0, lag_s),
                stalled=stalled,
                state=state,
            )
        )
    return out
