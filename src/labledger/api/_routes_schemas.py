"""Response schemas of the read-model endpoints, for the OpenAPI document (issue #17).

The bodies are written by msgspec from the projections' own rows (see
``json_response``); these pydantic models only describe them, as FastAPI's
``response_model``, so clients get real field names and types. A test
validates real responses against them, so they cannot drift silently. Models
allow extra fields: a projection may add a column without breaking clients.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class BaselineLine(_Open):
    """The current baseline of one (domain, regime); ``baseline_id`` null while none is set."""

    domain: str
    regime: str
    baseline_id: str | None
    cand_id: str | None = None
    generation: int | None = None
    genome: dict[str, Any] | None = None
    kpis: dict[str, float] | None = Field(
        None, description="measured KPIs only (absent: unmeasured)"
    )
    code_hash: str | None = None
    run_id: str | None = None
    trials: int | None = None
    set_position: int | None = None
    refresh_pending: int | None = Field(description="position of the pending refresh request")
    refreshes: int


class RegimeResult(_Open):
    """A candidate's trials in one regime, against the baseline, with ci95 per KPI."""

    regime: str
    trials: int
    trial_ids: list[int]
    kpis: dict[str, list[float | None]]
    baseline: dict[str, Any] | None = None
    delta: dict[str, list[float | None]] | None = None
    ci95: dict[str, list[float] | None] = Field(
        description="per KPI, [low, high] of the 95% CI; null with too few trials"
    )


class CandidatePack(_Open):
    """``candidate_pack.v2``: one candidate's genome, results per regime and aggregate."""

    schema_: str = Field(alias="schema", description="candidate_pack.v2")
    run_id: str | None
    domain: str
    cand_id: str
    generation: int
    genome: dict[str, Any]
    regimes: list[RegimeResult]
    aggregate: dict[str, Any] = Field(description="means, score_v2, baseline_score_v2, improves")


class Standing(_Open):
    """One tool's place on its spec's leaderboard."""

    spec_id: str
    rank: int
    tool_id: str
    fitness: float
    epoch: int
    impl_style: str
    median_ms: float | None = Field(description="milliseconds")
    stability: float | None
    lineage: str
    parent_tool_id: str | None
    repair_attempt: int | None
    chain: list[str]


class Rates(_Open):
    """Handoff and repair success rates of one spec (``spec_id`` null: every spec)."""

    spec_id: str | None
    tools_evaluated: int
    tools_handed_off: int
    handoff_rate: float | None
    handoff_success_rate: float | None
    repair_attempts: int
    repairs_succeeded: int
    repair_success_rate: float | None


class EpochMedian(_Open):
    """The median of the tools' median_ms in one (spec, epoch)."""

    spec_id: str
    epoch: int
    tools: int
    median_ms: float = Field(description="milliseconds")


class SeedSlot(_Open):
    """Kasmina lifecycle state of one (run, slot)."""

    run_id: str
    slot: str
    stage: str
    seed_id: str | None
    blueprint_id: str | None
    alpha: float | None
    last_command_id: str | None
    first_position: int
    last_position: int
    transitions: int


class TrainingSetSummary(_Open):
    """The Simic training set in brief."""

    transitions: int
    pending: int
    by_operation: dict[str, int]
    reward_mean: float | None
    reward_min: float | None
    reward_max: float | None
    runs: list[str]


class TrainingSetManifest(_Open):
    """The export's manifest: the tensors file, its hash, and the log it was built from."""

    tensors_file: str
    tensors_sha256: str
    format: str
    format_version: int
    transitions: int
    log: dict[str, Any] = Field(description="head_position and head_hash of the verified log")


class AuditLink(_Open):
    """One link of a command's chain: command, verification, effect, field_report or reward."""

    step: str
    position: int


class Rejection(_Open):
    """One refused command."""

    position: int
    run_id: str
    command_id: str | None
    reason: str | None
    detail: str | None
    key_id: str | None
    nonce: str | None


class ProjectionState(_Open):
    """One projection's version, checkpoint, lag and state."""

    name: str
    code_version: int
    built_version: int | None
    checkpoint: int
    head: int
    lag_events: int
    lag_seconds: float
    stalled: bool
    state: str


class StoreNonces(_Open):
    size: int
    expired: int
    evicted: int
    horizon_us: int


class NonceReport(_Open):
    """Admitted and refused nonces per key, and the store's nonce ledger."""

    admitted: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    store: StoreNonces


class Health(_Open):
    """Liveness."""

    ok: bool
    head: int
