"""Read models: D-REAM, ToolGen, Esper, audit, projections; and ``/metrics``.

Every endpoint catches its projection up to the head first (as the CLI verbs
do) and then calls the projection's own query function. The bodies are
msgspec's; ``response_model`` only documents them (``_routes_schemas``).
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse, PlainTextResponse

from labledger.api import _routes_schemas as m
from labledger.api._deps import Reader, State, json_response
from labledger.api._errors import documented
from labledger.api._metrics import CONTENT_TYPE, HttpMetrics
from labledger.api._state import ApiState
from labledger.errors import CorruptionDetected, UsageError
from labledger.lab.dream import report
from labledger.projections import audit as audit_model
from labledger.projections.dream import candidate_domains, candidate_pack, current_baselines
from labledger.projections.esper_training import completed, pending_count
from labledger.projections.seeds import slot_rows
from labledger.projections.status import status
from labledger.projections.toolgen import DEFAULT_TOP, leaderboard, median_ms_by_epoch, rates

Name = Annotated[str | None, Query(max_length=256)]
Top = Annotated[int, Query(ge=1, le=100)]

router = APIRouter(prefix="/api", responses=documented(401, 503))


@router.get("/dream/baselines", tags=["dream"], response_model=list[m.BaselineLine])
def baselines(state: State, _: Reader, domain: Name = None) -> Any:
    """The current baseline per (domain, regime)."""
    with state.read("dream_baselines") as tx:
        return json_response(current_baselines(tx, domain))


@router.get("/dream/candidates", tags=["dream"], response_model=dict[str, list[m.CandidatePack]])
def candidates(state: State, _: Reader, domain: Name = None, top: Top = 5) -> Any:
    """Per domain, the ``candidate_pack.v2`` of its best candidates by ``score_v2``."""
    with state.read("dream_candidates") as tx:
        return json_response(report.best_candidates(tx, domain, top))


@router.get(
    "/dream/candidates/{cand_id}",
    tags=["dream"],
    response_model=m.CandidatePack,
    responses=documented(404),
)
def pack(
    state: State, _: Reader, cand_id: Annotated[str, Path(max_length=256)], domain: Name = None
) -> Any:
    """One candidate's ``candidate_pack.v2`` (``domain`` when the id exists in several)."""
    with state.read("dream_candidates") as tx:
        domains = [d for d in candidate_domains(tx, cand_id) if domain in (None, d)]
        if not domains:
            raise HTTPException(404, f"no candidate {cand_id!r}: it has no recorded trials")
        if len(domains) > 1:
            raise UsageError(f"candidate {cand_id!r} exists in {', '.join(domains)}: add ?domain=")
        return json_response(candidate_pack(tx, domains[0], cand_id))


@router.get("/toolgen/leaderboard", tags=["toolgen"], response_model=list[m.Standing])
def toolgen_leaderboard(state: State, _: Reader, spec: Name = None, top: Top = DEFAULT_TOP) -> Any:
    """Top-N tools per spec by fitness, with epoch, style, median_ms, stability, lineage."""
    with state.read("toolgen") as tx:
        return json_response(leaderboard(tx, spec, top))


@router.get("/toolgen/rates", tags=["toolgen"], response_model=list[m.Rates])
def toolgen_rates(state: State, _: Reader) -> Any:
    """Handoff and repair success rates per spec, then overall (``spec_id`` null)."""
    with state.read("toolgen") as tx:
        return json_response(rates(tx))


@router.get("/toolgen/epochs", tags=["toolgen"], response_model=list[m.EpochMedian])
def toolgen_epochs(state: State, _: Reader, spec: Name = None) -> Any:
    """The median of the tools' median_ms per spec and epoch."""
    with state.read("toolgen") as tx:
        return json_response(median_ms_by_epoch(tx, spec))


@router.get("/esper/seeds", tags=["esper"], response_model=list[m.SeedSlot])
def seeds(state: State, _: Reader, run: Name = None) -> Any:
    """Kasmina lifecycle state per (run, slot)."""
    with state.read("seeds") as tx:
        return json_response(slot_rows(tx, run))


@router.get("/esper/training-set", tags=["esper"], response_model=m.TrainingSetSummary)
def training_summary(state: State, _: Reader) -> Any:
    """The Simic training set in brief: transitions, pending commands, reward summary."""
    with state.read("esper_training") as tx:
        rows, pending = completed(tx), pending_count(tx)
    rewards = [r.reward for r in rows]
    outcomes: dict[str, int] = {}
    for r in rows:
        op = r.heads.get("operation", "?")
        outcomes[op] = outcomes.get(op, 0) + 1
    return json_response(
        {
            "transitions": len(rows),
            "pending": pending,
            "by_operation": outcomes,
            "reward_mean": sum(rewards) / len(rewards) if rewards else None,
            "reward_min": min(rewards, default=None),
            "reward_max": max(rewards, default=None),
            "runs": sorted({r.run_id for r in rows}),
        }
    )


def _export(state: ApiState) -> tuple[dict[str, Any], FsPath]:
    """The training set as of the verified head, written once per head into the cache."""
    report_ = state.verify()
    if not report_.ok:
        raise CorruptionDetected(
            f"the log fails verification ({report_.message})", report_.first_bad_position
        )
    from labledger.projections import training_data  # imports torch

    out = state.cache_dir / f"training-set-{report_.head}-{report_.head_hash[:16]}.pt"
    with state.export_lock:
        if not training_data.manifest_path(out).exists():
            with state.read("esper_training") as tx:
                rows = completed(tx, as_of=report_.head)
                pending = pending_count(tx, as_of=report_.head)
            training_data.write_training_set(
                rows, out, head_position=report_.head, head_hash=report_.head_hash, pending=pending
            )
        doc = msgspec.json.decode(training_data.manifest_path(out).read_bytes())
    return doc, out


@router.get("/esper/training-set/manifest", tags=["esper"], response_model=m.TrainingSetManifest)
def training_manifest(state: State, _: Reader) -> Any:
    """The export's manifest as of the verified head (as ``esper training-set export``)."""
    return json_response(_export(state)[0])


@router.get(
    "/esper/training-set/download",
    tags=["esper"],
    response_class=FileResponse,
    responses={
        200: {
            "description": "torch tensors (torch.load)",
            "content": {"application/octet-stream": {}},
        }
    },
)
def training_download(state: State, _: Reader) -> Any:
    """The tensors file; its SHA-256 is in the manifest and the ``X-Tensors-SHA256`` header."""
    doc, out = _export(state)
    headers = {"X-Tensors-SHA256": doc["tensors_sha256"]}
    return FileResponse(
        out, media_type="application/octet-stream", filename=out.name, headers=headers
    )


@router.get(
    "/audit/commands/{command_id}",
    tags=["audit"],
    response_model=list[m.AuditLink],
    responses=documented(404),
)
def audit_trail(state: State, _: Reader, command_id: Annotated[str, Path(max_length=256)]) -> Any:
    """Command → verification → effects → field report → reward, in log order."""
    with state.read("audit") as tx:
        links = audit_model.trail(tx, command_id)
    if not links:
        raise HTTPException(404, f"no command {command_id!r} in the log (nor a refusal naming it)")
    return json_response(links)


@router.get("/audit/rejected", tags=["audit"], response_model=list[m.Rejection])
def audit_rejected(state: State, _: Reader) -> Any:
    """Every refused command, with reason, detail, key and nonce."""
    with state.read("audit") as tx:
        return json_response(audit_model.rejected(tx))


@router.get("/projections", tags=["operations"], response_model=list[m.ProjectionState])
def projections(
    state: State, _: Reader, stall_after: Annotated[float, Query(gt=0, le=86400)] = 60.0
) -> Any:
    """Per projection: version, checkpoint, head, lag in events and seconds, stalled."""
    return json_response(status(state.engine, stall_after_s=stall_after))


@router.get("/nonces", tags=["operations"], response_model=m.NonceReport)
def nonces(state: State, _: Reader) -> Any:
    """The store's nonce ledger (size, expiries, evictions) and admitted/refused nonces."""
    with state.read("nonce_ledger") as tx:
        summary = audit_model.nonce_summary(tx)
    return json_response({**summary, "store": msgspec.to_builtins(state.store.nonce_stats())})


metrics_router = APIRouter(tags=["operations"])
__all__ = ["HttpMetrics", "metrics_router", "router"]  # HttpMetrics: the app's HTTP metrics


@metrics_router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: State, _: Reader) -> Any:
    """Prometheus metrics: process, HTTP, build info, appends, refusals, projection lag."""
    body = state.metrics.render(
        status(state.engine), state.store.head(), state.store.nonce_stats().size
    )
    return PlainTextResponse(body, media_type=CONTENT_TYPE)


@metrics_router.get("/healthz", response_model=m.Health)
def healthz(state: State) -> Any:
    """Liveness: the store answers (no token needed, shows only the head)."""
    return json_response({"ok": True, "head": state.store.head()})
