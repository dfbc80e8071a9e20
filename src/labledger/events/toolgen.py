"""ToolGen ⇄ RepairLab events: the tool-synthesis tournament (seed ``001_…``).

ToolGen synthesizes a tool from a spec in an implementation style under annealed
budgets and evaluates it; a failing tool is handed off to RepairLab, whose
repaired version re-enters the tournament as a challenger. Code bundles and
SBOMs are content-addressed blobs referenced by SHA-256; the queue directories
and marker files of the seed are replaced by these events.
"""

from __future__ import annotations

import enum

from labledger.events._base import Event, Record
from labledger.events._types import (
    Count,
    Finite,
    Int64,
    Name,
    NonNegative,
    Path,
    Positive,
    PositiveCount,
    Sha256,
    Text,
    Unit,
)


class ImplStyle(enum.StrEnum):
    """Competing implementation strategies (``set`` is the baseline)."""

    SET = "set"
    TRIE = "trie"
    LSH = "lsh"
    SUFFIXARRAY = "suffixarray"


class Lineage(enum.StrEnum):
    """Where a tournament entry comes from."""

    ORIGINAL = "original"
    REPAIRLAB_FIXED = "repairlab_fixed"


class RepairFailure(enum.StrEnum):
    """Why a repair attempt failed."""

    TIMEOUT = "timeout"
    AGENT_ERROR = "agent_error"
    TESTS_FAILED = "tests_failed"


class Budgets(Record, frozen=True, kw_only=True):
    """Annealed resource budgets (epoch 0: 2000 ms / 128 MB, epoch 40: 1000 ms / 64 MB)."""

    timeout_ms: Positive
    memory_mb: Positive


class FitnessComponents(Record, frozen=True, kw_only=True):
    """The weighted parts of fitness (weights from the D-REAM config)."""

    correctness: Unit
    safety: Unit
    performance: Unit
    robustness: Unit
    documentation: Unit


class HandoffMetrics(Record, frozen=True, kw_only=True):
    """The metrics a handoff carries to RepairLab."""

    correctness: Unit
    fitness: Finite


class ToolSynthesized(Event, frozen=True, kw_only=True):
    """ToolGen produced a tool bundle for a spec."""

    TYPE = "toolgen.ToolSynthesized"
    VERSION = 1
    SUBSYSTEM = "toolgen"

    tool_id: Name
    spec_id: Name
    impl_style: ImplStyle
    epoch: Count
    anneal_temp: Positive
    budgets: Budgets
    code_sha256: Sha256
    sbom_sha256: Sha256
    license: Name = "MIT"
    """The SPDX license identifier stamped on the generated code."""


class Genome(Record, frozen=True, kw_only=True):
    """What a tool is made from: its template's style, its annealing gene and the
    code mutations applied to the template, in order (``operator@site``)."""

    impl_style: ImplStyle
    anneal_gene: Positive
    """Multiplies the epoch's annealing temperature (the seed's 0.8 / 1.0 / 1.2)."""
    mutations: list[Name]


class Member(Record, frozen=True, kw_only=True):
    """One tool of a generation, with the tool it was bred from."""

    tool_id: Name
    genome: Genome
    parent_tool_id: Name | None = None


class GenerationPlanned(Event, frozen=True, kw_only=True):
    """The tournament chose the tools one epoch evaluates for one spec (meta-evolution)."""

    TYPE = "toolgen.GenerationPlanned"
    VERSION = 1
    SUBSYSTEM = "toolgen"

    epoch: Count
    spec_id: Name
    members: list[Member]
    parents: list[Name]
    """The tools selection drew from (the spec's elite archive, challengers included)."""


class ToolEvaluated(Event, frozen=True, kw_only=True):
    """A synthesized tool was tested and benchmarked against its budget.

    v2: ``performance`` compares ``median_ms`` with the reference's median
    measured in the same run (a clipped log-ratio, ``reference_ms``), and the
    benchmark's peak traced memory is recorded (``peak_kib``).
    """

    TYPE = "toolgen.ToolEvaluated"
    VERSION = 2
    SUBSYSTEM = "toolgen"

    tool_id: Name
    spec_id: Name
    impl_style: ImplStyle
    epoch: Count
    correctness: Unit
    median_ms: NonNegative | None
    """Median of the benchmark runs; ``None`` when the tool did not run."""
    budget_ms: Positive
    performance: Unit
    """v2: ``clip(0.8 - 0.4·log10(median_ms / reference_ms), 0, 1)``; 0 when the tool
    did not run (v1: ``min(1, budget_ms / median_ms)``)."""
    stability: Unit
    """1.0 when both test runs agree, 0.5 when the tests are flaky."""
    diversity_bonus: Unit
    components: FitnessComponents
    fitness: Finite
    reference_ms: Positive | None = None
    """The reference implementation's median, timed alternately with the tool in the same
    process; ``None`` when the tool did not run to the end (and in v1)."""
    peak_kib: NonNegative | None = None
    """Peak traced memory of one benchmark run in KiB; ``None`` when not measured."""


class HandoffRequested(Event, frozen=True, kw_only=True):
    """ToolGen handed a failing tool to RepairLab (the seed's handoff file, as an event).

    v2 adds ``report_sha256``, the failing test output.
    """

    TYPE = "toolgen.HandoffRequested"
    VERSION = 2
    SUBSYSTEM = "toolgen"

    handoff_id: Name
    tool_id: Name
    source: Name = "toolgen"
    spec_path: Path
    bundle_dir: Path
    bundle_sha256: Sha256 | None = None
    epoch: Count
    impl_style: ImplStyle
    reason: Name
    """Why the tool was handed off, e.g. ``toolgen_incorrect``."""
    metrics: HandoffMetrics
    report_sha256: Sha256 | None = None
    """v2: the blob of the failing test output (per test: passed, got, expected, the
    traceback's line in ``tool.py``) that RepairLab's search is guided by."""


class RepairAttempted(Event, frozen=True, kw_only=True):
    """RepairLab started repairing a handed-off tool."""

    TYPE = "repairlab.RepairAttempted"
    VERSION = 1
    SUBSYSTEM = "repairlab"

    handoff_id: Name
    attempt: PositiveCount
    agent: Name
    timeout_s: Positive


class RepairSucceeded(Event, frozen=True, kw_only=True):
    """A repair attempt produced a tool that passes its tests."""

    TYPE = "repairlab.RepairSucceeded"
    VERSION = 1
    SUBSYSTEM = "repairlab"

    handoff_id: Name
    attempt: PositiveCount
    repaired_code_sha256: Sha256
    duration_s: NonNegative
    log_sha256: Sha256 | None = None


class RepairFailed(Event, frozen=True, kw_only=True):
    """A repair attempt gave up."""

    TYPE = "repairlab.RepairFailed"
    VERSION = 1
    SUBSYSTEM = "repairlab"

    handoff_id: Name
    attempt: PositiveCount
    failure: RepairFailure
    exit_code: Int64 | None
    duration_s: NonNegative
    detail: Text = ""
    log_sha256: Sha256 | None = None


class ChallengerEntered(Event, frozen=True, kw_only=True):
    """A repaired tool re-entered the tournament against the originals."""

    TYPE = "toolgen.ChallengerEntered"
    VERSION = 1
    SUBSYSTEM = "toolgen"

    tool_id: Name
    spec_id: Name
    impl_style: ImplStyle
    epoch: Count
    lineage: Lineage
    parent_tool_id: Name
    handoff_id: Name
    code_sha256: Sha256
