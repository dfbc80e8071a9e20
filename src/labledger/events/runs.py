"""Run lifecycle events, shared by every subsystem.

A run is one stream. It starts, beats while alive and finishes; when the
heartbeats stop a reaper appends :class:`RunAbandoned`. A run may be resumed
from a checkpoint as a new *attempt*: events of the dead attempt recorded after
that checkpoint are superseded (projections drop them), never merged with the
new attempt's events.
"""

from __future__ import annotations

import enum

from labledger.events._base import Event
from labledger.events._types import ConfigValue, Count, Name, NonNegative, Positive, Sha256, Text
from labledger.events.dream import DreamManifest


class Subsystem(enum.StrEnum):
    """The lab subsystems that run work."""

    DREAM = "dream"
    TOOLGEN = "toolgen"
    REPAIRLAB = "repairlab"
    ESPER = "esper"
    TRACK = "track"
    """A user's own script, through ``labledger.track`` (issue #17)."""


class RunOutcome(enum.StrEnum):
    """How a run ended on its own (a reaped run is ``run.RunAbandoned`` instead)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStarted(Event, frozen=True, kw_only=True):
    """A run began: what runs, with which config and code, where."""

    TYPE = "run.RunStarted"
    VERSION = 1
    SUBSYSTEM = "run"

    subsystem: Subsystem
    config: dict[Name, ConfigValue]
    code_version: Name
    host: Name
    heartbeat_interval_s: Positive = 30.0
    """How often the run promises a heartbeat; the reaper waits a few of these."""
    manifest: DreamManifest | None = None
    """D-REAM runs carry their reproducibility manifest here."""


class Heartbeat(Event, frozen=True, kw_only=True):
    """The run is alive."""

    TYPE = "run.Heartbeat"
    VERSION = 1
    SUBSYSTEM = "run"

    attempt: Count = 0
    seq: Count
    """Increases by one per heartbeat within an attempt."""
    progress: Text = ""


class RunFinished(Event, frozen=True, kw_only=True):
    """The run ended and said so itself."""

    TYPE = "run.RunFinished"
    VERSION = 1
    SUBSYSTEM = "run"

    attempt: Count = 0
    outcome: RunOutcome
    detail: Text = ""


class RunAbandoned(Event, frozen=True, kw_only=True):
    """A reaper declared the run dead because its heartbeats stopped."""

    TYPE = "run.RunAbandoned"
    VERSION = 1
    SUBSYSTEM = "run"

    attempt: Count = 0
    last_heartbeat_seq: Count | None
    """``None`` when the attempt never beat."""
    silent_for_s: NonNegative
    reaper: Name


class RunResumed(Event, frozen=True, kw_only=True):
    """A new attempt continues the run from a checkpoint of an earlier attempt.

    Events of ``resumes_attempt`` recorded after ``checkpoint_position`` (a
    global log position) are superseded by this attempt's events.
    """

    TYPE = "run.RunResumed"
    VERSION = 1
    SUBSYSTEM = "run"

    attempt: Count
    resumes_attempt: Count
    checkpoint_id: Name
    checkpoint_position: Count
    checkpoint_sha256: Sha256 | None = None
    """The checkpoint blob, when the checkpoint is a stored artifact."""

    def __post_init__(self) -> None:
        if self.attempt <= self.resumes_attempt:
            raise ValueError("attempt must be greater than resumes_attempt")
