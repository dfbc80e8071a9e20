"""Promotion: a candidate's genome becomes the configuration in force for its domain.

``dream promote CAND_ID`` is a signed command, ``dream.CandidatePromoted``,
appended through the store's gate like every signed command: a bad or missing
signature, a stale timestamp or a replayed nonce is refused there and recorded
as ``security.CommandRejected``. Before signing, the candidate must be
*eligible*, judged from its ``candidate_pack.v2``: safe, and
``improves_over_baseline`` exactly ``true`` (the bootstrap CI of its score
difference lies above the tolerance). An unsafe or inconclusive candidate is
refused with :class:`~labledger.errors.CommandRefused` and nothing is written.
The command carries its evidence (formula, difference, CI, trials, baseline
ids), so the ``dream_promoted`` read model can say on what grounds.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from labledger.errors import CommandRefused, UsageError
from labledger.events.dream import CandidatePromoted, PromotionEvidence
from labledger.events.security import CommandSecurity
from labledger.security import DEFAULT_WINDOW, KeyRing, LabGate, sign
from labledger.store import EventStore

PROMOTIONS_STREAM = "dream-promotions"


def evidence_of(pack: dict[str, Any]) -> PromotionEvidence:
    """The pack's case for promotion.

    Raises:
        CommandRefused: the candidate is unsafe, or its improvement is not ``true``.
    """
    agg, cand = pack["aggregate"], pack["cand_id"]
    imp = agg["improvement"]
    if not pack["safe"]:
        raise CommandRefused(
            "not_eligible", f"candidate {cand} is unsafe: a safety cap was exceeded"
        )
    if agg["improves_over_baseline"] is not True:
        verdict = agg["improves_over_baseline"]
        raise CommandRefused(
            "not_eligible",
            f"candidate {cand}: improves_over_baseline is {verdict!r}: {imp['reason']}",
        )
    baseline_ids = sorted(
        {r["baseline"]["baseline_id"] for r in pack["regimes"] if r.get("baseline")}
    )
    return PromotionEvidence(
        score_formula=imp["score_formula"],
        difference=imp["difference"],
        ci95=list(imp["ci95"]),
        trials=imp["trials"],
        tolerance=imp["tolerance"],
        baseline_ids=baseline_ids,
    )


def signing_ring(store: EventStore, ring: KeyRing | None) -> KeyRing:
    """``ring``, else the ring the store's gate verifies with."""
    if ring is not None:
        return ring
    gate = getattr(store, "gate", None)
    if isinstance(gate, LabGate):
        return gate.keyring
    raise UsageError("this store has no signing gate: open it with labledger.open_store")


def promote(
    store: EventStore,
    pack: dict[str, Any],
    *,
    promoted_by: str,
    reason: str = "",
    ring: KeyRing | None = None,
) -> CandidatePromoted:
    """Sign and append the promotion of the candidate whose pack is ``pack``.

    Raises:
        CommandRefused: not eligible (nothing written), or refused by the gate.
        UsageError: no signing key.
    """
    evidence = evidence_of(pack)
    unsigned = CandidatePromoted(
        command_id=f"promote-{uuid.uuid4().hex[:16]}",
        domain=pack["domain"],
        cand_id=pack["cand_id"],
        genome=pack["genome"],
        promoted_by=promoted_by,
        evidence=evidence,
        reason=reason,
        security=CommandSecurity(  # replaced by sign(): a fresh nonce, time, key and signature
            signature="",
            nonce="unsigned",
            key_id="unsigned",
            issued_at=dt.datetime.now(dt.UTC),
            freshness_window=DEFAULT_WINDOW,
        ),
    )
    signed = sign(unsigned, signing_ring(store, ring))
    assert isinstance(signed, CandidatePromoted)
    new = signed.to_new_event(run_id=pack.get("run_id"), actor=promoted_by)
    store.append(PROMOTIONS_STREAM, [new])
    return signed
