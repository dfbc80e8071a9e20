"""D-REAM read models (seed ``000_…``): ``dream_baselines`` and ``dream_candidates``.

Both fold the same events into trials, safety-cap breaches, run manifests and
baselines; ``dream_candidates`` also remembers, per candidate and regime, the
baseline in force when its first trial there was recorded (the seed's
evaluator loads the baseline before running the trials). The
``candidate_pack.v2`` is assembled on read by :func:`candidate_pack` from
these tables (CIs recomputed from the stored trials, see ``dream_stats``), so
``apply`` stays cheap and the state hash holds only log-derived rows.

Trials are keyed by (domain, cand_id, regime, trial): the lab names
candidates ``gen<G>_ind<I>`` per domain, and a trial recorded again (a retry)
replaces the earlier recording.

Baselines. A ``dream.GenerationCompleted`` closes the measurement of its
generation in its domain; then, for each of its regimes that has no baseline
or a pending refresh, the first *successful* candidate of that generation
(ordered by its first trial there) becomes the baseline. Successful means, in
that (domain, regime): at least ``trials_per_regime`` distinct trials (at
least one), every trial measured ``perf``, none reported ``errors > 0`` or
``oom > 0`` (an unmeasured count is not evidence of a failure), and no
``dream.SafetyCapExceeded`` for the candidate in any regime so far. After a
``dream.BaselineRefreshRequested`` the old baseline stays in force until the
next successful candidate whose first trial there comes *after* the request
replaces it. The baseline's KPIs are the candidate's trial means there (absent
KPIs stay absent), with its genome, the ``code_hash`` of its run's
``run.RunStarted`` manifest (``null`` if none), and
``baseline_id = bl-<domain>-<regime>-<position of the GenerationCompleted>``.

Valid trials. A trial recorded with a ``failure`` (v2: no work, too few
requests, a crashed workload; v1: no ``perf``) counts in no mean, CI or
baseline, and a candidate with a failed trial in a regime is not successful
there.

The pack's reference. Its ``score_v2`` and improvement are computed against
the baseline in force at its first trial in each regime, else (a candidate
measured before any baseline existed, e.g. generation 0) against the current
baseline of that regime; ``regimes[].baseline_source`` says which.

Resumed runs: a ``run.RunResumed`` drops the trials and cap breaches its run
recorded after the checkpoint (they belong to the dead attempt). A baseline
set from them is not undone (a limitation; the next refresh replaces it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa

from labledger.events import Event
from labledger.events.dream import (
    BaselineRefreshRequested,
    GenerationCompleted,
    Regime,
    SafetyCapExceeded,
    TrialRecorded,
)
from labledger.events.runs import RunResumed, RunStarted
from labledger.events.typed import Typed
from labledger.projections import dream_stats as ds
from labledger.projections.base import Projection, RowLike, TableSet, Tx
from labledger.store.base import RecordedEvent

_canon = msgspec.json.Encoder(order="sorted").encode
_INTS = frozenset({"errors", "oom"})
_REGIME_ORDER = {r.value: i for i, r in enumerate(Regime)}


def _kpi_columns(counts_as_int: bool) -> list[sa.Column[Any]]:
    return [
        sa.Column(m, sa.BigInteger if (counts_as_int and m in _INTS) else sa.Double)
        for m in ds.METRICS
    ]


class _DreamFold(Projection):
    version = 2
    handles = (
        TrialRecorded,
        SafetyCapExceeded,
        BaselineRefreshRequested,
        GenerationCompleted,
        RunStarted,
        RunResumed,
    )
    tracks_candidates = False

    def define(self, tables: TableSet) -> None:
        tables.add(
            "trials",
            *(sa.Column(k, sa.Text, primary_key=True) for k in ("domain", "cand_id", "regime")),
            sa.Column("trial", sa.BigInteger, primary_key=True),
            sa.Column("generation", sa.BigInteger, nullable=False),
            sa.Column("run_id", sa.Text),
            sa.Column("position", sa.BigInteger, nullable=False),
            sa.Column("genome", sa.Text, nullable=False),
            *_kpi_columns(True),
            sa.Column("failure", sa.Text),
            sa.Column("output_sha256", sa.Text),
            sa.Column("units", sa.Text, nullable=False),
            sa.Column("sensors", sa.Text, nullable=False),
        )
        tables.add(
            "caps",
            sa.Column("position", sa.BigInteger, primary_key=True),
            *(sa.Column(k, sa.Text, nullable=False) for k in ("domain", "cand_id", "regime")),
            sa.Column("generation", sa.BigInteger, nullable=False),
            sa.Column("trial", sa.BigInteger),
            sa.Column("metric", sa.Text, nullable=False),
            sa.Column("sensor", sa.Text),
            sa.Column("cap", sa.Double, nullable=False),
            sa.Column("observed", sa.Double, nullable=False),
            sa.Column("run_id", sa.Text),
        )
        tables.add(
            "runs",
            sa.Column("run_id", sa.Text, primary_key=True),
            sa.Column("code_hash", sa.Text, nullable=False),
            sa.Column("caps", sa.Text, nullable=False),
        )
        tables.add(
            "baselines",
            sa.Column("baseline_id", sa.Text, primary_key=True),
            *(sa.Column(k, sa.Text, nullable=False) for k in ("domain", "regime", "cand_id")),
            sa.Column("generation", sa.BigInteger, nullable=False),
            sa.Column("genome", sa.Text, nullable=False),
            sa.Column("code_hash", sa.Text),
            sa.Column("run_id", sa.Text),
            sa.Column("trials", sa.BigInteger, nullable=False),
            sa.Column("set_position", sa.BigInteger, nullable=False),
            *_kpi_columns(False),
        )
        tables.add(
            "current",
            sa.Column("domain", sa.Text, primary_key=True),
            sa.Column("regime", sa.Text, primary_key=True),
            sa.Column("baseline_id", sa.Text),
            sa.Column("refresh_position", sa.BigInteger),
            sa.Column("refresh_requested_by", sa.Text),
            sa.Column("refreshes", sa.BigInteger, nullable=False, default=0),
        )
        if self.tracks_candidates:
            tables.add(
                "cand_regimes",
                *(sa.Column(k, sa.Text, primary_key=True) for k in ("domain", "cand_id", "regime")),
                sa.Column("run_id", sa.Text),
                sa.Column("first_position", sa.BigInteger, nullable=False),
                sa.Column("baseline_id", sa.Text),
            )

    def apply(self, tx: Tx, item: Typed[Event]) -> None:
        record, event = item.record, item.event
        match event:
            case TrialRecorded():
                self._trial(tx, record, event)
            case SafetyCapExceeded():
                _cap(tx, record, event)
            case BaselineRefreshRequested():
                _refresh(tx, record, event)
            case GenerationCompleted():
                _completed(tx, record, event)
            case RunStarted() if event.manifest is not None:
                run_id = record.run_id or record.stream
                caps = event.config.get("caps")
                tx.upsert(
                    "runs",
                    {"run_id": run_id},
                    code_hash=event.manifest.code_hash,
                    caps=_canon(caps if isinstance(caps, dict) else {}).decode(),
                )
            case RunResumed() if record.run_id is not None:
                self._resumed(tx, record.run_id, event.checkpoint_position)
            case _:
                pass

    def _trial(self, tx: Tx, record: RecordedEvent, event: TrialRecorded) -> None:
        key, values = _trial_row(record, event)
        tx.upsert("trials", {**key, "trial": event.trial}, **values)
        if self.tracks_candidates and tx.get("cand_regimes", **key) is None:
            current = tx.get("current", domain=event.domain, regime=event.regime.value)
            tx.insert(
                "cand_regimes",
                **key,
                run_id=record.run_id,
                first_position=record.position,
                baseline_id=None if current is None else current.baseline_id,
            )

    def _resumed(self, tx: Tx, run_id: str, after: int) -> None:
        for name in ("trials", "caps"):
            table = tx.table(name)
            tx.delete_where(name, table.c.run_id == run_id, table.c.position > after)
        if self.tracks_candidates:
            regimes, trials = tx.table("cand_regimes"), tx.table("trials")
            orphan = ~sa.exists().where(
                *(trials.c[k] == regimes.c[k] for k in ("domain", "cand_id", "regime"))
            )
            tx.delete_where("cand_regimes", orphan)


_last_trial: tuple[RecordedEvent, TrialRecorded, dict[str, str], dict[str, Any]] | None = None


def _trial_row(
    record: RecordedEvent, event: TrialRecorded
) -> tuple[dict[str, str], dict[str, Any]]:
    """The (domain, cand_id, regime) of a trial and its row's other values.

    Both dream projections fold every trial into the same row, one right after
    the other in a pass: the row (three canonical encodes) is worked out for
    the first and handed to the second (the last trial's row is kept, and only
    the same record and event objects get it back). Issue #19.
    """
    global _last_trial
    last = _last_trial  # one read: another thread may swap it meanwhile
    if last is not None and last[0] is record and last[1] is event:
        return last[2], last[3]
    key = {"domain": event.domain, "cand_id": event.cand_id, "regime": event.regime.value}
    values = {
        "generation": event.generation,
        "run_id": record.run_id,
        "position": record.position,
        "genome": _canon(event.genome).decode(),
        **{m: getattr(event.kpis, m) for m in ds.METRICS},
        "failure": event.failure,
        "output_sha256": event.output_sha256,
        "units": _canon(event.units).decode(),
        "sensors": _canon(event.sensors).decode(),
    }
    _last_trial = (record, event, key, values)
    return key, values


class DreamBaselinesProjection(_DreamFold):
    """Per (domain, regime): the baseline (KPIs, baseline_id, genome, code hash), refreshes."""

    name = "dream_baselines"
    description = "D-REAM: per (domain, regime) baseline KPIs, baseline_id, genome, code hash"


class DreamCandidatesProjection(_DreamFold):
    """Per candidate: trials, cap breaches and baselines, for ``candidate_pack.v2``."""

    name = "dream_candidates"
    description = "D-REAM: per candidate trials, caps and baseline, read as candidate_pack.v2"
    tracks_candidates = True


def _cap(tx: Tx, record: RecordedEvent, event: SafetyCapExceeded) -> None:
    fields = msgspec.to_builtins(event)  # exactly the table's columns, enums as values
    tx.insert("caps", position=record.position, run_id=record.run_id, **fields)


def _refresh(tx: Tx, record: RecordedEvent, event: BaselineRefreshRequested) -> None:
    for regime in [event.regime] if event.regime is not None else list(Regime):
        key = {"domain": event.domain, "regime": regime.value}
        row = tx.get("current", **key)
        tx.upsert(
            "current",
            key,
            refresh_position=record.position,
            refresh_requested_by=event.requested_by,
            refreshes=(0 if row is None else row.refreshes) + 1,
        )


def _completed(tx: Tx, record: RecordedEvent, event: GenerationCompleted) -> None:
    for regime in dict.fromkeys(r.value for r in event.regimes):
        current = tx.get("current", domain=event.domain, regime=regime)
        if current is not None and current.baseline_id and current.refresh_position is None:
            continue
        after = (
            -1 if current is None or current.refresh_position is None else current.refresh_position
        )
        chosen = _first_successful(tx, event, regime, after)
        if chosen is not None:
            _set_baseline(tx, record.position, event, regime, chosen)


def _first_successful(
    tx: Tx, event: GenerationCompleted, regime: str, after: int
) -> list[sa.Row[Any]] | None:
    trials = tx.table("trials")
    where = (trials.c.domain == event.domain, trials.c.regime == regime)
    query = sa.select(trials).where(*where, trials.c.generation == event.generation)
    rows = tx.query(query.order_by(trials.c.cand_id, trials.c.trial)).all()
    by_cand: dict[str, list[sa.Row[Any]]] = {}
    for row in rows:
        by_cand.setdefault(row.cand_id, []).append(row)
    ordered = sorted(by_cand.values(), key=lambda rs: min(r.position for r in rs))
    for cand_rows in ordered:
        if min(r.position for r in cand_rows) > after and _successful(tx, event, cand_rows):
            return cand_rows
    return None


def _successful(tx: Tx, event: GenerationCompleted, rows: list[sa.Row[Any]]) -> bool:
    if len(rows) < max(1, event.trials_per_regime):
        return False
    for row in rows:
        if not _valid(row) or (row.errors or 0) > 0 or (row.oom or 0) > 0:
            return False
    return tx.get("caps", domain=event.domain, cand_id=rows[0].cand_id) is None


def _valid(row: RowLike) -> bool:
    return row.failure is None and row.perf is not None


def baseline_candidate(
    tx: Tx, domain: str, generation: int, regime: str, trials_per_regime: int
) -> str | None:
    """The candidate that will become the (domain, regime) baseline when ``generation`` closes.

    The rule of the module docstring, for a generation whose
    ``dream.GenerationCompleted`` is not yet in the log (the runner scores its
    first generation against it). ``None`` when a baseline is in force and no
    refresh is pending, or no candidate qualifies.
    """
    current = tx.get("current", domain=domain, regime=regime)
    if current is not None and current.baseline_id and current.refresh_position is None:
        return None
    after = -1 if current is None or current.refresh_position is None else current.refresh_position
    probe = GenerationCompleted(
        domain=domain,
        generation=generation,
        candidates=0,
        regimes=[Regime(regime)],
        trials_per_regime=trials_per_regime,
        best_cand_id=None,
        packs=[],
        best_fitness=None,
    )
    rows = _first_successful(tx, probe, regime, after)
    return None if rows is None else str(rows[0].cand_id)


def _set_baseline(
    tx: Tx, position: int, event: GenerationCompleted, regime: str, rows: list[sa.Row[Any]]
) -> None:
    latest = max(rows, key=lambda r: r.position)
    run = None if latest.run_id is None else tx.get("runs", run_id=latest.run_id)
    baseline_id = f"bl-{event.domain}-{regime}-{position}"
    means = ds.regime_means({m: [getattr(r, m) for r in rows] for m in ds.METRICS})
    tx.insert(
        "baselines",
        baseline_id=baseline_id,
        domain=event.domain,
        regime=regime,
        cand_id=latest.cand_id,
        generation=latest.generation,
        genome=latest.genome,
        code_hash=None if run is None else run.code_hash,
        run_id=latest.run_id,
        trials=len(rows),
        set_position=position,
        **{m: means.get(m) for m in ds.METRICS},
    )
    tx.upsert(
        "current",
        {"domain": event.domain, "regime": regime},
        baseline_id=baseline_id,
        refresh_position=None,
        refresh_requested_by=None,
    )


# -- reading -----------------------------------------------------------------


def _baseline_values(row: RowLike) -> dict[str, Any]:
    values: dict[str, Any] = {m: getattr(row, m) for m in ds.METRICS if getattr(row, m) is not None}
    return {**values, "baseline_id": row.baseline_id}


def current_baselines(tx: Tx, domain: str | None = None) -> list[dict[str, Any]]:
    """The current baseline of every (domain, regime) known, in (domain, regime) order.

    Args:
        tx: a read of ``dream_baselines`` (or ``dream_candidates``).
        domain: only this domain.

    Returns:
        One dict per (domain, regime): ``baseline_id`` (``null`` while none is
        set), ``cand_id``, ``generation``, ``genome``, ``kpis`` (measured only),
        ``code_hash``, ``run_id``, ``trials``, ``set_position``,
        ``refresh_pending`` (the position of the pending request, or ``null``)
        and ``refreshes``.
    """
    current = tx.table("current")
    query = sa.select(current).order_by(current.c.domain, current.c.regime)
    if domain is not None:
        query = query.where(current.c.domain == domain)
    rows = tx.query(query).all()
    return [_baseline_line(c, tx.get("baselines", baseline_id=c.baseline_id)) for c in rows]


def _baseline_line(cur: sa.Row[Any], row: RowLike | None) -> dict[str, Any]:
    line: dict[str, Any] = {"domain": cur.domain, "regime": cur.regime, "baseline_id": None}
    if row is not None:
        kpis = _baseline_values(row)
        del kpis["baseline_id"]
        line |= {
            "baseline_id": row.baseline_id,
            "cand_id": row.cand_id,
            "generation": row.generation,
            "genome": msgspec.json.decode(row.genome),
            "kpis": kpis,
            "code_hash": row.code_hash,
            "run_id": row.run_id,
            "trials": row.trials,
            "set_position": row.set_position,
        }
    return line | {"refresh_pending": cur.refresh_position, "refreshes": cur.refreshes}


def candidate_domains(tx: Tx, cand_id: str) -> list[str]:
    """The domains in which ``cand_id`` has trials (candidate ids are unique per domain)."""
    trials = tx.table("trials")
    query = sa.select(trials.c.domain).where(trials.c.cand_id == cand_id).distinct()
    return sorted(r.domain for r in tx.query(query))


def candidate_pack(tx: Tx, domain: str, cand_id: str) -> dict[str, Any] | None:
    """The ``candidate_pack.v2`` of one candidate, JSON-ready (see ``dream_stats``).

    Args:
        tx: a read of ``dream_candidates``.
        domain, cand_id: the candidate.

    Returns:
        ``schema``, ``run_id`` (of its latest trial), ``domain``, ``cand_id``,
        ``generation``, ``genome`` (of its latest trial), ``units``,
        ``sensors``, ``regimes`` (in idle, normal, stress, mixed order),
        ``aggregate``, ``safe``, ``caps_exceeded``, ``caps_unverified``,
        ``risk_profile`` and ``artifacts``; ``None`` when the candidate has no trials.
    """
    rows = trial_rows(tx, domain, cand_id)
    if not rows:
        return None
    latest = max(rows, key=lambda r: r.position)
    header = {
        "run_id": latest.run_id,
        "domain": domain,
        "cand_id": cand_id,
        "generation": latest.generation,
        "genome": msgspec.json.decode(latest.genome),
    }
    results, base_rows = _regime_results(tx, domain, cand_id, rows)
    run = None if latest.run_id is None else tx.get("runs", run_id=latest.run_id)
    inputs = ds.PackInputs(
        cand_rows=_by_regime(sorted((r for r in rows if _valid(r)), key=_regime_rank)),
        base_rows=base_rows,
        all_rows=[_kpis(r) for r in rows],
        run_caps={} if run is None else msgspec.json.decode(run.caps),
        units=msgspec.json.decode(latest.units),
        sensors=[msgspec.json.decode(r.sensors) for r in rows],
        artifacts=[
            {"regime": r.regime, "trial": r.trial, "sha256": r.output_sha256}
            for r in sorted(rows, key=lambda r: r.position)
            if r.output_sha256 is not None
        ],
    )
    return ds.build_pack(header, results, _caps_of(tx, domain, cand_id), inputs)


def trial_rows(tx: Tx, domain: str, cand_id: str) -> list[sa.Row[Any]]:
    """Every recorded trial of one candidate, in trial order."""
    trials = tx.table("trials")
    where = (trials.c.domain == domain, trials.c.cand_id == cand_id)
    return list(tx.query(sa.select(trials).where(*where).order_by(trials.c.trial)).all())


def _kpis(row: RowLike) -> dict[str, Any]:
    return {m: getattr(row, m) for m in ds.METRICS}


def _by_regime(rows: Iterable[RowLike]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.regime, []).append(_kpis(row))
    return found


def _regime_results(
    tx: Tx, domain: str, cand_id: str, rows: Iterable[sa.Row[Any]]
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    by_regime: dict[str, list[sa.Row[Any]]] = {}
    for row in rows:
        by_regime.setdefault(row.regime, []).append(row)
    results, base_rows = [], {}
    for regime in sorted(by_regime, key=lambda r: _REGIME_ORDER.get(r, len(_REGIME_ORDER))):
        got = [r for r in by_regime[regime] if _valid(r)]
        failed = [
            {"trial": r.trial, "failure": r.failure} for r in by_regime[regime] if not _valid(r)
        ]
        kpis = {m: [getattr(r, m) for r in got] for m in ds.METRICS}
        baseline, source = _baseline_for(tx, domain, cand_id, regime)
        names = (cand_id, domain, regime)
        result = ds.regime_result(names, [r.trial for r in got], kpis, baseline, failed)
        results.append({**result, "baseline_source": source})
        if baseline is not None:
            base_cand = baseline["cand_id"]
            base = [r for r in trial_rows(tx, domain, base_cand) if r.regime == regime]
            base_rows[regime] = [_kpis(r) for r in base if _valid(r)]
        if result["baseline"] is not None:
            result["baseline"].pop("cand_id", None)
    return results, base_rows


def _baseline_for(
    tx: Tx, domain: str, cand_id: str, regime: str
) -> tuple[dict[str, Any] | None, str | None]:
    link = tx.get("cand_regimes", domain=domain, cand_id=cand_id, regime=regime)
    source = "in_force_at_first_trial"
    baseline_id = None if link is None else link.baseline_id
    if baseline_id is None:
        current = tx.get("current", domain=domain, regime=regime)
        baseline_id, source = (None if current is None else current.baseline_id), "current"
    row = None if baseline_id is None else tx.get("baselines", baseline_id=baseline_id)
    if row is None:
        return None, None
    return {**_baseline_values(row), "cand_id": row.cand_id}, source


def _caps_of(tx: Tx, domain: str, cand_id: str) -> list[dict[str, Any]]:
    caps = tx.table("caps")
    query = sa.select(caps).where(caps.c.domain == domain, caps.c.cand_id == cand_id)
    fields = ("regime", "trial", "metric", "sensor", "cap", "observed", "position")
    return [{f: getattr(r, f) for f in fields} for r in tx.query(query.order_by(caps.c.position))]


def _regime_rank(row: RowLike) -> tuple[int, int]:
    return _REGIME_ORDER.get(row.regime, len(_REGIME_ORDER)), row.trial
