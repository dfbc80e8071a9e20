"""The D-REAM read models: baselines and candidate_pack.v2 (seed ``000_…``), both backends."""

from __future__ import annotations

import io
import json
import math
import random
import statistics
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger import EventStore
from labledger.cli.main import run
from labledger.events import Event
from labledger.events.dream import (
    BaselineRefreshRequested,
    CapMetric,
    DreamManifest,
    GenerationCompleted,
    Provenance,
    Regime,
    SafetyCapExceeded,
    SensorProvenance,
    TrialKpis,
    TrialRecorded,
)
from labledger.events.runs import RunResumed, RunStarted, Subsystem
from labledger.projections import Projection, ProjectionEngine
from labledger.projections import dream_stats as ds
from labledger.projections.dream import (
    DreamBaselinesProjection,
    DreamCandidatesProjection,
    candidate_domains,
    candidate_pack,
    current_baselines,
)
from labledger.testing.backends import Backend
from labledger.testing.event_strategies import from_type_info
from labledger.testing.profile import examples
from labledger.testing.projection_contract import SETTINGS, Log, ProjectionContract, fresh_ledger
from tests.projections.test_dream_stats import plain_bootstrap

DOMAINS = ["cpu", "gpu"]
CANDS = ["gen0_ind0", "gen0_ind1", "gen1_ind0"]
RUNS = ["r1", "r2"]
H1, H2 = "1" * 64, "2" * 64
replace = msgspec.structs.replace

# -- generated logs, from the catalog's own strategies ---------------------------

catalog_kpis = from_type_info(msgspec.inspect.type_info(TrialKpis))
clean_kpis = st.builds(
    TrialKpis,
    perf=st.floats(0.5, 2.0),
    p95_ms=st.none() | st.floats(1.0, 50.0),
    watts=st.none() | st.floats(10.0, 200.0),
    temp_peak_c=st.none() | st.floats(30.0, 90.0),
    errors=st.sampled_from([0, None]),
    oom=st.sampled_from([0, None]),
)


SENSORS = SensorProvenance(watts=Provenance.ABSENT, temp_peak_c=Provenance.ABSENT)
UNITS = {"perf": "MiB/s hashed", "p95_ms": "ms"}


def valid(event: TrialRecorded) -> bool:
    """A trial that counts: no failure recorded and perf measured."""
    return event.failure is None and event.kpis.perf is not None


def field_strategy(cls: type, name: str) -> st.SearchStrategy[Any]:
    """The catalog's strategy for one field of an event class."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return from_type_info(next(f.type for f in info.fields if f.name == name))


genomes = field_strategy(TrialRecorded, "genome")
cap_metrics = field_strategy(SafetyCapExceeded, "metric")
some_regime = st.sampled_from([Regime.IDLE, Regime.STRESS])


@st.composite
def dream_event(draw: st.DrawFn, log_size: int) -> Event:
    """One event of a small world (two domains, three candidates) so rules interact.

    Pooled ids are drawn directly (generating regex-valid names only to replace
    them is slow); KPIs, genomes and cap metrics come from the catalog strategies.
    """
    kind = draw(
        st.sampled_from(["trial"] * 5 + ["cap", "refresh", "done", "done", "start", "resume"])
    )
    domain, cand = draw(st.sampled_from(DOMAINS)), draw(st.sampled_from(CANDS))
    generation = draw(st.integers(0, 1))
    if kind == "trial":
        return TrialRecorded(
            domain=domain,
            regime=draw(some_regime),
            cand_id=cand,
            generation=generation,
            trial=draw(st.integers(0, 2)),
            genome=draw(genomes),
            kpis=draw(st.one_of(clean_kpis, clean_kpis, catalog_kpis)),
            sensors=SENSORS,
            units=UNITS,
            failure=draw(st.sampled_from([None, None, None, "the trial did no work"])),
        )
    if kind == "cap":
        return SafetyCapExceeded(
            domain=domain,
            regime=draw(some_regime),
            cand_id=cand,
            generation=generation,
            trial=None,
            metric=draw(cap_metrics),
            sensor=None,
            cap=1.0,
            observed=2.0,
        )
    if kind == "refresh":
        regime = draw(st.none() | some_regime)
        return BaselineRefreshRequested(domain=domain, regime=regime, requested_by="op")
    if kind == "done":
        return GenerationCompleted(
            domain=domain,
            generation=generation,
            candidates=3,
            regimes=draw(st.lists(some_regime, min_size=1, max_size=3)),
            trials_per_regime=draw(st.integers(0, 2)),
            best_cand_id=None,
            packs=[],
            best_fitness=None,
        )
    if kind == "start":
        return started(draw(st.sampled_from([H1, H2])))
    at = draw(st.integers(0, log_size))
    return RunResumed(attempt=1, resumes_attempt=0, checkpoint_id="c", checkpoint_position=at)


@st.composite
def dream_logs(draw: st.DrawFn) -> Log:
    log: list[tuple[str, Event]] = []
    for _ in range(draw(st.integers(0, 10))):
        log.append((draw(st.sampled_from(RUNS)), draw(dream_event(len(log)))))
    return log


def append_runs(store: EventStore, log: Log) -> None:
    """Each stream name is a run: its events carry it as ``run_id``."""
    for run_id, event in log:
        store.append(f"run-{run_id}", [event.to_new_event(run_id=run_id)])


class DreamContract(ProjectionContract):
    def logs(self) -> st.SearchStrategy[Log]:
        return dream_logs()

    def prepare(self, store: EventStore, log: Log) -> None:
        append_runs(store, log)


class BaselinesContract(DreamContract):
    def make_projection(self) -> Projection:
        return DreamBaselinesProjection()


class CandidatesContract(DreamContract):
    def make_projection(self) -> Projection:
        return DreamCandidatesProjection()


class TestSqliteDreamBaselines(BaselinesContract):
    backend_fixture = "sqlite_backend"


class TestPostgresDreamBaselines(BaselinesContract):
    backend_fixture = "postgres_backend"


class TestSqliteDreamCandidates(CandidatesContract):
    backend_fixture = "sqlite_backend"


class TestPostgresDreamCandidates(CandidatesContract):
    backend_fixture = "postgres_backend"


# -- an independent model: plain dicts, folded event by event --------------------


class Model:
    """The documented rules, written out again without tables."""

    def __init__(self) -> None:
        self.trials: dict[tuple[str, str, str, int], tuple[int, str, TrialRecorded]] = {}
        self.caps: list[tuple[int, str, str, str]] = []  # position, run, domain, cand
        self.code: dict[str, str] = {}
        self.current: dict[tuple[str, str], dict[str, Any]] = {}
        self.first: dict[tuple[str, str, str], tuple[int, str, str | None]] = {}
        self.baseline_cand: dict[str, str] = {}

    def apply(self, position: int, run_id: str, event: Event) -> None:
        if isinstance(event, TrialRecorded):
            key = (event.domain, event.cand_id, event.regime.value)
            self.trials[(*key, event.trial)] = (position, run_id, event)
            if key not in self.first:
                bl = self.current.get((event.domain, event.regime.value), {}).get("id")
                self.first[key] = (position, run_id, bl)
        elif isinstance(event, SafetyCapExceeded):
            self.caps.append((position, run_id, event.domain, event.cand_id))
        elif isinstance(event, BaselineRefreshRequested):
            for r in [event.regime] if event.regime else list(Regime):
                self.current.setdefault((event.domain, r.value), {})["refresh"] = position
        elif isinstance(event, RunStarted) and event.manifest is not None:
            self.code[run_id] = event.manifest.code_hash
        elif isinstance(event, RunResumed):
            self._resume(run_id, event.checkpoint_position)
        elif isinstance(event, GenerationCompleted):
            for regime in dict.fromkeys(r.value for r in event.regimes):
                self._maybe_set(position, event, regime)

    def _resume(self, run_id: str, after: int) -> None:
        self.trials = {
            k: v for k, v in self.trials.items() if not (v[1] == run_id and v[0] > after)
        }
        self.caps = [c for c in self.caps if not (c[1] == run_id and c[0] > after)]
        left = {k[:3] for k in self.trials}
        self.first = {k: v for k, v in self.first.items() if k in left}

    def _maybe_set(self, position: int, done: GenerationCompleted, regime: str) -> None:
        cur = self.current.get((done.domain, regime), {})
        if cur.get("id") and cur.get("refresh") is None:
            return
        after = cur.get("refresh") if cur.get("refresh") is not None else -1
        cands: dict[str, list[tuple[int, str, TrialRecorded]]] = {}
        for (d, c, r, _), value in sorted(self.trials.items()):
            if d == done.domain and r == regime and value[2].generation == done.generation:
                cands.setdefault(c, []).append(value)
        for cand, trials in sorted(cands.items(), key=lambda kv: min(t[0] for t in kv[1])):
            ok = len(trials) >= max(1, done.trials_per_regime) and all(
                valid(t[2]) and not (t[2].kpis.errors or 0) and not (t[2].kpis.oom or 0)
                for t in trials
            )
            unsafe = any(c[2] == done.domain and c[3] == cand for c in self.caps)
            if min(t[0] for t in trials) > after and ok and not unsafe:
                latest = max(trials, key=lambda t: t[0])
                kpis = {}
                for m in ds.METRICS:
                    vals = [getattr(t[2].kpis, m) for t in trials]
                    vals = [float(v) for v in vals if v is not None]
                    if vals:
                        kpis[m] = ds.mean(vals)
                self.baseline_cand[f"bl-{done.domain}-{regime}-{position}"] = cand
                self.current[(done.domain, regime)] = {
                    "id": f"bl-{done.domain}-{regime}-{position}",
                    "cand": cand,
                    "kpis": kpis,
                    "code": self.code.get(latest[1]),
                }
                return


def fold(store: EventStore) -> Model:
    from labledger.events.typed import typed

    model = Model()
    for item in typed(store.read_all()):
        model.apply(item.position, item.record.run_id or item.record.stream, item.event)
    return model


def engine_for(store: EventStore) -> ProjectionEngine:
    engine = ProjectionEngine(store, [DreamBaselinesProjection(), DreamCandidatesProjection()])
    engine.run()
    return engine


@settings(SETTINGS, max_examples=examples(6))
@given(log=dream_logs())
def test_generated_logs_against_the_model(backend: Backend, log: Log) -> None:
    with fresh_ledger(backend) as store:
        append_runs(store, log)
        model, engine = fold(store), engine_for(store)
        with engine.read("dream_baselines") as tx:
            lines = current_baselines(tx)
        assert {(x["domain"], x["regime"]) for x in lines} == set(model.current)
        for line in lines:
            cur = model.current[(line["domain"], line["regime"])]
            assert line["baseline_id"] == cur.get("id")
            if cur.get("id"):
                assert (line["cand_id"], line["kpis"]) == (cur["cand"], cur["kpis"])
                assert line["code_hash"] == cur["code"]
        with engine.read("dream_candidates") as tx:
            for domain, cand in {(k[0], k[1]) for k in model.trials}:
                check_pack(model, candidate_pack(tx, domain, cand), domain, cand)
                assert domain in candidate_domains(tx, cand)


def check_pack(model: Model, pack: dict[str, Any] | None, domain: str, cand: str) -> None:
    assert pack is not None
    msgspec.json.encode(pack)  # JSON-ready, non-finite floats spelled out
    safe = not any(c[2] == domain and c[3] == cand for c in model.caps)
    assert pack["safe"] is safe
    if not safe:
        assert pack["aggregate"]["score_v2"] == "-inf"
        assert pack["aggregate"]["improves_over_baseline"] is not True
    for result in pack["regimes"]:
        regime = result["regime"]
        every = sorted(k for k in model.trials if k[:3] == (domain, cand, regime))
        keys = [k for k in every if valid(model.trials[k][2])]
        assert result["trial_ids"] == [k[3] for k in keys]
        assert [f["trial"] for f in result["failed"]] == [k[3] for k in every if k not in keys]
        for metric, column in result["kpis"].items():
            expected = [getattr(model.trials[k][2].kpis, metric) for k in keys]
            assert column == expected
            vals = [v for v in expected if v is not None]
            ci = result["ci95"][metric]
            if len(vals) < 2:
                assert ci is None
            elif all(math.isfinite(abs(v) * 4) for v in vals):
                assert ci == list(
                    plain_bootstrap(vals, ds.bootstrap_seed(cand, domain, regime, metric))
                )
        linked = model.first[(domain, cand, regime)][2]
        current = model.current.get((domain, regime), {}).get("id")
        assert (result["baseline"] or {}).get("baseline_id") == (linked or current)
    check_improvement(model, pack, domain, cand)


def valid_rows(model: Model, domain: str, cand: str, regime: str) -> list[dict[str, Any]]:
    keys = sorted(k for k in model.trials if k[:3] == (domain, cand, regime))
    events = [model.trials[k][2] for k in keys if valid(model.trials[k][2])]
    return [msgspec.to_builtins(e.kpis) for e in events]


def check_improvement(model: Model, pack: dict[str, Any], domain: str, cand: str) -> None:
    """The score difference and its CI, recomputed here with plain loops (issue #14)."""
    cand_rows, base_rows = {}, {}
    for result in pack["regimes"]:
        regime = result["regime"]
        cand_rows[regime] = valid_rows(model, domain, cand, regime)
        bid = (result["baseline"] or {}).get("baseline_id")
        if bid is not None:
            base_rows[regime] = valid_rows(model, domain, model.baseline_cand[bid], regime)
    imp = pack["aggregate"]["improvement"]
    values = [
        v for rows in (*cand_rows.values(), *base_rows.values()) for r in rows for v in r.values()
    ]
    if not all(v is None or (isinstance(v, int | float) and abs(v) < 1e12) for v in values):
        return  # catalog extremes: the ratios overflow; the model checks the rest
    point, ci = plain_difference(
        cand_rows, base_rows, ds.bootstrap_seed(cand, domain, "*", "score_diff")
    )
    if point is None:
        assert imp["difference"] is None
        return
    assert imp["difference"] == pytest.approx(point, rel=1e-9, abs=1e-9)
    if ci is None or imp["ci95"] is None:
        assert ci == imp["ci95"]
    else:
        assert imp["ci95"] == pytest.approx(ci, rel=1e-9, abs=1e-9)


def plain_difference(
    cand: dict[str, list[dict[str, Any]]], base: dict[str, list[dict[str, Any]]], seed: int
) -> tuple[float | None, list[float] | None]:
    regimes = [r for r in cand if r in base and cand[r] and base[r]]

    def means(rows: list[dict[str, Any]]) -> dict[str, float]:
        out = {}
        for m in ds.METRICS:
            vs = [r[m] for r in rows if r.get(m) is not None]
            if vs:
                out[m] = math.fsum(vs) / len(vs)
        return out

    def has(mm: dict[str, dict[str, float]], m: str, positive: bool) -> bool:
        return all(m in mm[r] and (mm[r][m] > 0 or not positive) for r in regimes)

    def score(
        cm: dict[str, dict[str, float]],
        bm: dict[str, dict[str, float]],
        terms: list[tuple[str, float]],
    ) -> float:
        return sum(
            w * math.fsum(cm[r][m] / bm[r][m] for r in regimes) / len(regimes) for m, w in terms
        )

    cm = {r: means(cand[r]) for r in regimes}
    bm = {r: means(base[r]) for r in regimes}
    if not regimes or not (has(cm, "perf", False) and has(bm, "perf", True)):
        return None, None
    terms = [("perf", 1.0)]
    if has(cm, "p95_ms", False) and has(bm, "p95_ms", True):
        terms.append(("p95_ms", -0.2))
    for power in ("watts", "watts_modelled"):
        if has(cm, power, False) and has(bm, power, True):
            terms.append((power, -0.1))
            break
    own = sum(w for _, w in terms)
    point = score(cm, bm, terms) - own
    if any(min(len(cand[r]), len(base[r])) < 2 for r in regimes):
        return point, None
    rng = random.Random(seed)
    diffs = []
    for _ in range(2000):
        c = {r: means(rng.choices(cand[r], k=len(cand[r]))) for r in regimes}
        b = {r: means(rng.choices(base[r], k=len(base[r]))) for r in regimes}
        if all(has(c, m, False) and has(b, m, True) for m, _ in terms):
            diffs.append(score(c, b, terms) - own)
    if len(diffs) < 1000:
        return point, None
    diffs.sort()
    k = round(len(diffs) * 0.05 / 2)
    return point, [diffs[k], diffs[len(diffs) - 1 - k]]


# -- hand-written scenarios ------------------------------------------------------


def kpis(
    perf: float | None, p95: float | None = None, watts: float | None = None, errors: int | None = 0
) -> TrialKpis:
    return TrialKpis(perf=perf, p95_ms=p95, watts=watts, temp_peak_c=None, errors=errors, oom=0)


def trial(cand: str, regime: Regime, n: int, k: TrialKpis, gen: int = 0) -> TrialRecorded:
    genome = {"governor": cand, "swappiness": 60}
    return TrialRecorded(
        domain="cpu",
        regime=regime,
        cand_id=cand,
        generation=gen,
        trial=n,
        genome=genome,
        kpis=k,
        sensors=SENSORS,
        units=UNITS,
    )


def done(gen: int, *regimes: Regime) -> GenerationCompleted:
    return GenerationCompleted(
        domain="cpu",
        generation=gen,
        candidates=3,
        regimes=list(regimes),
        trials_per_regime=2,
        best_cand_id=None,
        packs=[],
        best_fitness=None,
    )


def started(code_hash: str) -> RunStarted:
    manifest = DreamManifest(code_hash=code_hash, regimes_sha256=H1, caps_sha256=H1, rng_seed=1)
    return RunStarted(
        subsystem=Subsystem.DREAM, config={}, code_version="v", host="h", manifest=manifest
    )


IDLE, STRESS = Regime.IDLE, Regime.STRESS


class Lab:
    """Appends a script and remembers where each labelled event landed."""

    def __init__(self, store: EventStore) -> None:
        self.store, self.at = store, {}

    def __call__(self, run_id: str, event: Event, label: str = "") -> int:
        result = self.store.append(f"run-{run_id}", [event.to_new_event(run_id=run_id)])
        if label:
            self.at[label] = result.last_position
        return result.last_position


def first_and_refreshed_baselines(lab: Lab) -> None:
    lab("r1", started(H1))
    lab("r1", trial("C", IDLE, 0, kpis(1.0)))  # C never finishes: incomplete
    lab("r1", trial("A", IDLE, 0, kpis(5.0, errors=1)))  # A reports an error
    lab("r1", trial("A", IDLE, 1, kpis(5.0)))
    lab("r1", trial("B", IDLE, 0, kpis(10.0, 2.0)))
    lab("r1", trial("B", IDLE, 1, kpis(12.0, 4.0)))
    lab("r1", done(0, IDLE), "gen0")
    lab("r2", started(H2))
    lab("r2", trial("D", IDLE, 0, kpis(30.0, 1.0), gen=1))  # before the refresh
    lab("r2", BaselineRefreshRequested(domain="cpu", regime=None, requested_by="op"), "refresh")
    lab("r2", trial("F", IDLE, 0, kpis(40.0, 1.0), gen=1))
    lab("r2", trial("F", IDLE, 1, kpis(40.0, 1.0), gen=1))
    cap = SafetyCapExceeded(
        domain="cpu",
        regime=STRESS,
        cand_id="F",
        generation=1,
        trial=0,
        metric=CapMetric.TEMP_PEAK_C,
        sensor="cpu",
        cap=90.0,
        observed=93.5,
    )
    lab("r2", cap, "cap")
    lab("r2", trial("E", IDLE, 0, kpis(14.0, 2.5, watts=None), gen=1))
    lab("r2", trial("E", IDLE, 1, kpis(15.0, 3.5, watts=None), gen=1))
    lab("r2", trial("E", IDLE, 2, kpis(16.0, None, watts=None), gen=1))
    lab("r2", trial("E", STRESS, 0, kpis(8.0, 6.0), gen=1))
    lab("r2", trial("D", IDLE, 1, kpis(30.0, 1.0), gen=1))
    lab("r2", done(1, IDLE, STRESS), "gen1")


@pytest.fixture
def lab(backend: Backend) -> Iterator[Lab]:
    with fresh_ledger(backend) as store:
        yield Lab(store)


def test_first_successful_candidate_then_refresh_sets_the_baseline(lab: Lab) -> None:
    first_and_refreshed_baselines(lab)
    gen0, gen1, refresh = lab.at["gen0"], lab.at["gen1"], lab.at["refresh"]
    engine = engine_for(lab.store)
    with engine.read("dream_baselines") as tx:
        lines = {x["regime"]: x for x in current_baselines(tx, "cpu")}
        history = tx.conn.execute(tx.table("baselines").select()).all()
    assert {b.cand_id: b.baseline_id for b in history} == {
        "B": f"bl-cpu-idle-{gen0}",
        "E": f"bl-cpu-idle-{gen1}",
    }
    b = next(r for r in history if r.cand_id == "B")
    assert (b.perf, b.p95_ms, b.watts, b.code_hash) == (11.0, 3.0, None, H1)
    idle = lines["idle"]
    assert idle["baseline_id"] == f"bl-cpu-idle-{gen1}"
    assert (idle["cand_id"], idle["code_hash"], idle["refresh_pending"]) == ("E", H2, None)
    assert idle["kpis"] == {"perf": 15.0, "p95_ms": 3.0, "errors": 0.0, "oom": 0.0}
    assert idle["genome"] == {"governor": "E", "swappiness": 60}
    # Stress has only E with one trial (two needed): the refresh stays pending there.
    assert lines["stress"]["baseline_id"] is None
    assert lines["stress"]["refresh_pending"] == refresh
    assert set(lines) == {r.value for r in Regime}


def test_pack_numbers_against_a_hand_computation(lab: Lab) -> None:
    first_and_refreshed_baselines(lab)
    engine = engine_for(lab.store)
    with engine.read("dream_candidates") as tx:
        e, f, b = (candidate_pack(tx, "cpu", c) for c in ("E", "F", "B"))
        assert candidate_pack(tx, "cpu", "nobody") is None
    assert e is not None and f is not None and b is not None
    idle, stress = e["regimes"]
    assert (e["schema"], e["generation"], e["run_id"], idle["regime"]) == (
        "candidate_pack.v2",
        1,
        "r2",
        "idle",
    )
    assert idle["trials"] == 3 and idle["kpis"]["p95_ms"] == [2.5, 3.5, None]
    assert "watts" not in idle["kpis"]  # never measured: absent, not 0
    # E began after B became the baseline: its pack compares against B (11.0, 3.0).
    assert idle["baseline"] == {
        "perf": 11.0,
        "p95_ms": 3.0,
        "errors": 0.0,
        "oom": 0.0,
        "baseline_id": f"bl-cpu-idle-{lab.at['gen0']}",
    }
    assert idle["delta"]["perf"] == [3.0, 4.0, 5.0]
    assert idle["delta"]["p95_ms"] == [-0.5, 0.5, None]
    seed = ds.bootstrap_seed("E", "cpu", "idle", "perf")
    assert idle["ci95"]["perf"] == list(plain_bootstrap([14.0, 15.0, 16.0], seed))
    assert stress["baseline"] is None and stress["ci95"]["perf"] is None  # N = 1
    agg = e["aggregate"]
    assert agg["means"]["perf"] == {"idle": 15.0, "stress": 8.0, "overall": 11.5}
    p95 = statistics.fmean([statistics.fmean([2.5, 3.5]), 6.0])
    assert agg["score_v2_raw"] == pytest.approx(11.5 - 0.2 * p95)
    # Normalised by B on idle only (stress has no baseline): perf 15/11, p95 3.0/3.0, no power.
    assert agg["compared_regimes"] == ["idle"]
    assert agg["score_terms"] == {"perf": "perf", "latency": "p95_ms", "power": None}
    assert agg["score_v2"] == pytest.approx(15 / 11 - 0.2 * 1.0)
    imp = agg["improvement"]
    assert imp["difference"] == pytest.approx(15 / 11 - 1.0)
    # E has three idle trials, B two: the CI exists but a decision needs five (issue #14).
    assert imp["trials"] == 2 and imp["ci95"] is not None
    assert agg["improves_over_baseline"] == "inconclusive" and e["safe"] is True
    assert (f["safe"], f["aggregate"]["score_v2"]) == (False, "-inf")
    assert f["aggregate"]["improves_over_baseline"] is False
    assert f["caps_exceeded"][0]["observed"] == 93.5
    # B measured before any baseline: compared with the current (refreshed) one; 2 trials.
    assert b["regimes"][0]["baseline_source"] == "current" and b["regimes"][0]["delta"]
    assert b["aggregate"]["improves_over_baseline"] == "inconclusive"
    assert e["sensors"]["watts"]["provenance"] == "absent"
    # The difference and its CI, recomputed independently from the folded log.
    model = fold(lab.store)
    for pack, name in ((e, "E"), (b, "B")):
        check_improvement(model, pack, "cpu", name)


def test_a_resumed_run_drops_the_dead_attempts_trials(lab: Lab) -> None:
    lab("r1", trial("G", IDLE, 0, kpis(1.0)))
    checkpoint = lab("r1", trial("G", IDLE, 1, kpis(2.0)))
    lab("r1", trial("G", IDLE, 2, kpis(99.0)))  # after the checkpoint: superseded
    lab("r1", trial("H", STRESS, 0, kpis(99.0)))
    resumed = RunResumed(
        attempt=1, resumes_attempt=0, checkpoint_id="c", checkpoint_position=checkpoint
    )
    lab("r1", resumed)
    lab("r1", trial("G", IDLE, 2, kpis(3.0)))
    engine = engine_for(lab.store)
    with engine.read("dream_candidates") as tx:
        pack = candidate_pack(tx, "cpu", "G")
        assert candidate_domains(tx, "H") == []
    assert pack is not None and pack["regimes"][0]["kpis"]["perf"] == [1.0, 2.0, 3.0]


# -- the CLI -----------------------------------------------------------------------


def cli(url: str, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    stdin, sys.stdin = sys.stdin, io.TextIOWrapper(io.BytesIO(b""))
    try:
        code = run(["--db", url, *argv])
    finally:
        sys.stdin = stdin
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_dream_pack_and_baselines(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    from labledger.ledger import open_ledger

    with open_ledger(url, strict=False) as store:
        first_and_refreshed_baselines(Lab(store))
        lab2 = Lab(store)
        lab2("r3", replace(trial("E", IDLE, 0, kpis(1.0)), domain="gpu"))
        engine = engine_for(store)
        with engine.read("dream_candidates") as tx:
            expected = candidate_pack(tx, "cpu", "E")
        with engine.read("dream_baselines") as tx:
            baselines = current_baselines(tx, "cpu")
    code, out, err = cli(url, "dream", "pack", "E", "--domain", "cpu", capsys=capsys)
    assert (code, err) == (0, "") and json.loads(out) == expected
    code, out, _ = cli(url, "dream", "pack", "F", capsys=capsys)
    assert code == 0 and json.loads(out)["aggregate"]["score_v2"] == "-inf"
    code, _, err = cli(url, "dream", "pack", "E", capsys=capsys)
    assert code == 2 and "cpu, gpu" in err and "--domain" in err
    code, out, err = cli(url, "dream", "pack", "nobody", capsys=capsys)
    assert (code, out) == (2, "") and "no candidate 'nobody'" in err
    code, out, _ = cli(url, "dream", "baselines", "--domain", "cpu", capsys=capsys)
    assert code == 0 and [json.loads(x) for x in out.splitlines()] == baselines
