"""Projection status: version, checkpoint, head, lag in events and seconds, stalls.

A projection behind the head is one of two things, and telling them apart is
the point of this module (issue #17: ``doctor`` used to fail projections that
nobody runs):

- ``stalled``: something is following it, yet it has not moved for longer than
  ``stall_after_s`` — the complaint users of other event stores make most,
  projections that stop silently. Only this one is an alarm.
- ``idle``: nobody follows it. It catches up on the next read or
  ``labledger project run``; being behind is its normal state.

*Following* is known two ways. The caller may say so (``following``: the
names a runner in this process follows). Otherwise the log says so: a runner
that wrote the checkpoint *after* the first event it has not applied was
recorded saw that event and left it — a runner is there and not moving. A
checkpoint last written before the first pending event only shows that the
last run ended in time; that projection is idle. Both times are the ledger's
own (the checkpoint's ``updated_at`` and the record's ``recorded_at``); the
only outside clock is ``now_us``, which the caller may pass (tests do).
"""

from __future__ import annotations

import time
from collections.abc import Collection

import msgspec

from labledger.projections import checkpoint as cps
from labledger.projections.engine import ProjectionEngine

DEFAULT_STALL_AFTER_S = 60.0
STATES = ("current", "behind", "idle", "stalled", "not built", "needs rebuild")


class ProjectionStatus(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    code_version: int
    built_version: int | None
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    stalled: bool
    """True only in state ``stalled``: followed, behind and not moving."""
    followed: bool
    state: str
    """One of :data:`STATES`: ``current``; ``behind`` (moving); ``idle`` (behind,
    nobody follows); ``stalled``; ``not built``; ``needs rebuild``."""


def _recorded_at(engine: ProjectionEngine, position: int) -> int | None:
    if position <= 0:
        return None
    found = next(iter(engine.target.read_all(position, limit=1)), None)
    return found.recorded_at_us if found is not None and found.position == position else None


def _state(
    cp: cps.Checkpoint | None, code_version: int, lag: int, moving: bool, followed: bool
) -> str:
    if cp is None:
        return "not built"
    if cp.version != code_version:
        return "needs rebuild"
    if not lag:
        return "current"
    if moving:
        return "behind"
    return "stalled" if followed else "idle"


def status(
    engine: ProjectionEngine,
    *,
    stall_after_s: float = DEFAULT_STALL_AFTER_S,
    following: Collection[str] = (),
    now_us: int | None = None,
) -> list[ProjectionStatus]:
    """The status of every projection of ``engine``, by name.

    Args:
        engine: the projections and the store.
        stall_after_s: how long a followed projection may stand still while behind.
        following: names the caller knows are followed (e.g. by its own runner).
        now_us: the time to judge "not moving" at (default: the wall clock).

    Returns:
        One :class:`ProjectionStatus` per projection.
    """
    head = engine.source.head()
    head_at = _recorded_at(engine, head)
    with engine.target.read() as conn:
        checkpoints = cps.load_all(conn)
    now = time.time_ns() // 1000 if now_us is None else now_us
    out = []
    for name in sorted(engine.projections):
        proj, cp = engine.projections[name], checkpoints.get(name)
        position = cp.position if cp else 0
        lag = max(0, head - position)
        cp_at = _recorded_at(engine, position)
        lag_s = ((head_at or 0) - (cp_at or (head_at or 0))) / 1e6 if lag else 0.0
        moving = cp is not None and (now - cp.updated_at_us) / 1e6 <= stall_after_s
        pending_at = _recorded_at(engine, position + 1) if lag else None
        followed = name in following or bool(
            cp and pending_at is not None and cp.updated_at_us >= pending_at
        )
        state = _state(cp, proj.version, lag, moving, followed)
        out.append(
            ProjectionStatus(
                name=name,
                code_version=proj.version,
                built_version=cp.version if cp else None,
                checkpoint=position,
                head=head,
                lag_events=lag,
                lag_seconds=max(0.0, lag_s),
                stalled=state == "stalled",
                followed=followed and bool(lag),
                state=state,
            )
        )
    return out
