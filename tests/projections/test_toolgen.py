"""The ToolGen read models (issues #3, #15: leaderboards), on both backends.

Every number is checked against ``PlainFold``, an independent computation over
the raw events (dicts and a ``sorted``), on generated logs (two runs, to check
every query's run scope) and on a hand-written tournament where a failing tool
is handed off, repaired, and wins as a challenger. Issue #15 extends it to the
new components: genomes and bred lineage, the performance/reference/peak
columns, the Pareto set, attempts per repair and time to repair.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import PurePosixPath
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labledger import EventStore, init_store
from labledger.cli.main import run
from labledger.events import Event
from labledger.events.toolgen import (
    Budgets,
    ChallengerEntered,
    FitnessComponents,
    GenerationPlanned,
    HandoffMetrics,
    HandoffRequested,
    ImplStyle,
    Lineage,
    RepairAttempted,
    RepairFailed,
    RepairFailure,
    RepairSucceeded,
    ToolEvaluated,
    ToolSynthesized,
)
from labledger.events.typed import typed
from labledger.ledger import open_ledger
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.toolgen import (
    Rates,
    Standing,
    ToolgenProjection,
    latest_run,
    leaderboard,
    median_ms_by_epoch,
    pareto,
    rates,
)
from labledger.testing.backends import Backend
from labledger.testing.event_strategies import events_of
from labledger.testing.profile import examples
from labledger.testing.projection_contract import (
    Log,
    ProjectionContract,
    append_log,
    fresh_ledger,
)

HANDLED = ToolgenProjection.handles
TD, JF = "text_deduplicate", "json_flatten"


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


# -- generated logs: catalog strategies with ids drawn from small pools ----------------

_KEEP = object()  # leave the catalog strategy's value
_OVERRIDES: dict[str, st.SearchStrategy[Any]] = {
    "tool_id": st.sampled_from(["t1", "t2", "t3", "t4"]),
    "parent_tool_id": st.sampled_from(["t1", "t2", "t3", "t4"]),
    "spec_id": st.sampled_from([TD, JF]),
    "handoff_id": st.sampled_from(["h1", "h2", "h3"]),
    "epoch": st.integers(0, 3),
    "attempt": st.integers(1, 3),
    "code_sha256": st.sampled_from([sha("a"), sha("b")]),
    "repaired_code_sha256": st.sampled_from([sha("a"), sha("b")]),
    "spec_path": st.sampled_from([f"toolgen/specs/{TD}.json", "specs/other.json"]),
    # Small pools make ties in the ranking and shared epochs likely.
    "fitness": st.sampled_from([0.5, 0.9, _KEEP]),
    "median_ms": st.sampled_from([None, 0.25, 1.0, _KEEP]),
    "peak_kib": st.sampled_from([None, 10.0, 20.0, _KEEP]),
    "agent": st.sampled_from(["restore_last@0", "alt_call@1"]),
}
_MEMBER_IDS = st.sampled_from(["t1", "t2", "t3", "t4"])
_PARENT_IDS = st.sampled_from([None, "t1", "t2", "t3", "t4"])


@st.composite
def toolgen_logs(draw: st.DrawFn) -> Log:
    log: list[tuple[str, Event]] = []
    for _ in range(draw(st.integers(0, 12))):
        event = draw(st.sampled_from(HANDLED).flatmap(events_of))
        changes = {
            name: value
            for name, strategy in _OVERRIDES.items()
            if name in event.__struct_fields__ and (value := draw(strategy)) is not _KEEP
        }
        if isinstance(event, GenerationPlanned):  # members' ids from the same small pool
            changes["members"] = [
                msgspec.structs.replace(
                    m, tool_id=draw(_MEMBER_IDS), parent_tool_id=draw(_PARENT_IDS)
                )
                for m in event.members
            ]
        log.append((type(event).SUBSYSTEM, msgspec.structs.replace(event, **changes)))
    return log


class ToolgenContract(ProjectionContract):
    def make_projection(self) -> Projection:
        return ToolgenProjection()

    def logs(self) -> st.SearchStrategy[Log]:
        return toolgen_logs()


class TestSqliteToolgen(ToolgenContract):
    backend_fixture = "sqlite_backend"


class TestPostgresToolgen(ToolgenContract):
    backend_fixture = "postgres_backend"


# -- the independent computation -----------------------------------------------------


class PlainFold:
    """The read models recomputed from the raw records with dicts and ``sorted``.

    It reads the log itself (positions and run ids from the envelopes), applies
    the documented definitions to plain dicts, and answers every query with
    ``sorted`` and comprehensions; nothing of the projection's code is shared.
    """

    def __init__(self, store: EventStore) -> None:
        self.tools: dict[str, dict[str, Any]] = {}
        self.standings: dict[str, dict[str, Any]] = {}
        self.epoch_ms: dict[tuple[str, int, str], tuple[str | None, float | None]] = {}
        self.handoffs: dict[str, dict[str, Any]] = {}
        self.attempts: dict[tuple[str, int], dict[str, Any]] = {}
        self.runs: dict[str, int] = {}
        for item in typed(store.read_all()):
            if isinstance(item.event, HANDLED):
                self.fold(item.record.position, item.record.run_id, item.event)

    def fold(self, pos: int, run: str | None, e: Event) -> None:
        if run is not None:
            self.runs.setdefault(run, pos)
        match e:
            case GenerationPlanned():
                for m in e.members:
                    g = m.genome
                    genes = " ".join(
                        [
                            f"{g.impl_style.value} x{g.anneal_gene:g}",
                            *(f"+{x}" for x in g.mutations),
                        ]
                    )
                    lineage = "original" if m.parent_tool_id is None else "offspring"
                    self._tool(
                        m.tool_id,
                        pos,
                        run_id=run,
                        spec_id=e.spec_id,
                        impl_style=g.impl_style.value,
                        epoch=e.epoch,
                        genome=genes,
                        lineage=lineage,
                        parent=m.parent_tool_id,
                    )
            case ToolSynthesized():
                identity = {
                    "spec_id": e.spec_id,
                    "impl_style": e.impl_style.value,
                    "epoch": e.epoch,
                }
                if e.tool_id in self.tools:
                    self.tools[e.tool_id].update(identity)
                else:
                    self._tool(e.tool_id, pos, run_id=run, **identity)
            case ChallengerEntered():
                self._challenger(pos, run, e)
            case ToolEvaluated():
                before = self.standings.get(e.tool_id, {}).get("evaluations", 0)
                self.standings[e.tool_id] = {
                    "run_id": run,
                    "spec_id": e.spec_id,
                    "impl_style": e.impl_style.value,
                    "epoch": e.epoch,
                    "fitness": e.fitness,
                    "median_ms": e.median_ms,
                    "performance": e.performance,
                    "reference_ms": e.reference_ms,
                    "peak_kib": e.peak_kib,
                    "stability": e.stability,
                    "correctness": e.correctness,
                    "evaluations": before + 1,
                    "position": pos,
                }
                self.epoch_ms[(e.spec_id, e.epoch, e.tool_id)] = (run, e.median_ms)
            case HandoffRequested():
                self.handoffs[e.handoff_id] = {"run": run, "tool": e.tool_id, "path": e.spec_path}
            case RepairAttempted():
                key = (e.handoff_id, e.attempt)
                if key in self.attempts:
                    self.attempts[key]["edit"] = e.agent
                else:
                    self.attempts[key] = {"outcome": "pending", "sha": None, "edit": e.agent}
            case RepairSucceeded():
                self._outcome(e.handoff_id, e.attempt, "succeeded", e.repaired_code_sha256, e)
            case RepairFailed():
                self._outcome(e.handoff_id, e.attempt, "failed", None, e)

    def _tool(self, tool: str, pos: int, **values: Any) -> None:
        if tool in self.tools:
            self.tools[tool].update(values)
        else:
            blank = {"genome": None, "lineage": "original", "parent": None}
            self.tools[tool] = {**blank, "handoff": None, "attempt": None, "first": pos, **values}

    def _outcome(self, hid: str, n: int, outcome: str, sha: str | None, e: Any) -> None:
        row = self.attempts.setdefault((hid, n), {"edit": None})
        row.update(outcome=outcome, sha=sha, duration=e.duration_s)

    def _challenger(self, pos: int, run: str | None, e: ChallengerEntered) -> None:
        done = [
            (n, a["sha"])
            for (h, n), a in self.attempts.items()
            if h == e.handoff_id and a["outcome"] == "succeeded"
        ]
        fixed = [n for n, code in done if code == e.code_sha256] or [n for n, _ in done]
        attempt = max(fixed, default=None)
        parent = self.tools.get(e.parent_tool_id, {})
        edit = self.attempts.get((e.handoff_id, attempt or 0), {}).get("edit")
        genome = f"{parent['genome']} +{edit}" if parent.get("genome") and edit else None
        self._tool(
            e.tool_id,
            pos,
            run_id=run,
            spec_id=e.spec_id,
            impl_style=e.impl_style.value,
            epoch=e.epoch,
            lineage=e.lineage.value,
            parent=e.parent_tool_id,
            handoff=e.handoff_id,
            attempt=attempt,
            genome=genome,
        )

    def latest_run(self) -> str | None:
        return max(self.runs, key=lambda r: self.runs[r], default=None)

    def chain(self, tool: str) -> list[str]:
        chain = [tool]
        while (parent := self.tools.get(chain[-1], {}).get("parent")) is not None:
            if parent in chain:
                break
            chain.append(parent)
        return chain[::-1]

    def _mine(self, spec: str | None, run: str | None) -> dict[str, dict[str, Any]]:
        return {
            t: row
            for t, row in self.standings.items()
            if spec in (None, row["spec_id"]) and run in (None, row["run_id"])
        }

    def leaderboard(self, spec: str | None, top: int, run: str | None) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        mine = self._mine(spec, run)
        for spec_id in sorted({row["spec_id"] for row in mine.values()}):
            ranked = sorted(
                (t for t, row in mine.items() if row["spec_id"] == spec_id),
                key=lambda t: (
                    -mine[t]["fitness"],
                    mine[t]["median_ms"] is None,
                    mine[t]["median_ms"] or 0,
                    mine[t]["position"],
                ),
            )
            for rank, t in enumerate(ranked[:top], start=1):
                r, tool = mine[t], self.tools.get(t, {})
                chain = self.chain(t)
                rows.append(
                    (
                        *(spec_id, rank, t, r["run_id"], r["fitness"], r["epoch"]),
                        *(r["impl_style"], r["median_ms"], r["performance"], r["reference_ms"]),
                        *(r["peak_kib"], r["stability"], r["correctness"], r["evaluations"]),
                        *(r["position"], tool.get("genome"), tool.get("lineage", "original")),
                        *(tool.get("parent"), len(chain) - 1, tool.get("attempt"), chain),
                    )
                )
        return rows

    def pareto(self, spec: str | None, run: str | None) -> list[tuple[Any, ...]]:
        measured = {
            t: r
            for t, r in self._mine(spec, run).items()
            if r["median_ms"] is not None and r["peak_kib"] is not None
        }

        def beaten(t: str) -> bool:
            a = measured[t]
            mine = (a["fitness"], -a["median_ms"], -a["peak_kib"])
            for u, b in measured.items():
                theirs = (b["fitness"], -b["median_ms"], -b["peak_kib"])
                same_spec = b["spec_id"] == a["spec_id"] and u != t
                no_worse = all(x >= y for x, y in zip(theirs, mine, strict=True))
                if same_spec and no_worse and theirs != mine:
                    return True
            return False

        rows = [
            (
                r["spec_id"],
                t,
                r["fitness"],
                r["median_ms"],
                r["peak_kib"],
                r["impl_style"],
                not beaten(t),
            )
            for t, r in measured.items()
        ]
        return sorted(rows, key=lambda x: (x[0], -x[2], x[3], x[4], x[1]))

    def epochs(self, spec: str | None, run: str | None) -> list[tuple[str, int, int, float]]:
        groups: dict[tuple[str, int], list[float]] = defaultdict(list)
        for (spec_id, epoch, _), (row_run, ms) in self.epoch_ms.items():
            if ms is not None and spec in (None, spec_id) and run in (None, row_run):
                groups[(spec_id, epoch)].append(ms)
        # Exact rational median: no overflow and no rounding until the end.
        exact = {k: statistics.median(Fraction(v) for v in vs) for k, vs in groups.items()}
        return [(s, e, len(groups[(s, e)]), float(exact[(s, e)])) for s, e in sorted(groups)]

    def rates(self, run: str | None) -> dict[str | None, dict[str, Any]]:
        tool_spec = {t: r["spec_id"] for t, r in self._mine(None, run).items()}
        handoffs = {h: x for h, x in self.handoffs.items() if run in (None, x["run"])}
        handoff_spec = {
            hid: tool_spec.get(h["tool"])
            or self.tools.get(h["tool"], {}).get("spec_id")
            or PurePosixPath(h["path"]).stem
            for hid, h in handoffs.items()
        }
        attempts = {k: a for k, a in self.attempts.items() if run is None or k[0] in handoffs}
        handed = {h["tool"] for h in handoffs.values()}
        out: dict[str | None, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        for tool, spec in tool_spec.items():
            for key in (spec, None):
                out[key]["tools_evaluated"] += 1
                out[key]["tools_handed_off"] += tool in handed
        for hid, spec in handoff_spec.items():
            mine = [a for (h, _), a in attempts.items() if h == hid]
            ok = any(a["outcome"] == "succeeded" for a in mine)
            for key in (spec, None):
                out[key]["handoffs"] += 1
                out[key]["handoffs_repaired"] += ok
                if ok:
                    out[key]["_attempts"] += len(mine)
                    out[key]["_seconds"] += sum(a.get("duration") or 0.0 for a in mine)
        for (hid, _), a in attempts.items():
            for key in {handoff_spec.get(hid), None}:
                out[key]["repair_attempts"] += 1
                out[key][f"repairs_{a['outcome']}"] += 1
        out[None]["tools_evaluated"] += 0  # the overall row always exists
        return out


def standing_tuple(s: Standing) -> tuple[Any, ...]:
    return tuple(msgspec.structs.astuple(s))


_DERIVED = ("attempts_per_repair", "time_to_repair_s")


def rates_dict(r: Rates) -> dict[str, Any]:
    counts = msgspec.structs.asdict(r)
    return {
        k: v
        for k, v in counts.items()
        if v and k != "spec_id" and not k.endswith("rate") and k not in _DERIVED
    }


def check_rate_values(r: Rates, expected: dict[str, Any]) -> None:
    pairs = [
        (r.handoff_rate, r.tools_handed_off, r.tools_evaluated),
        (r.handoff_success_rate, r.handoffs_repaired, r.handoffs),
        (r.repair_success_rate, r.repairs_succeeded, r.repair_attempts),
        (r.attempts_per_repair, expected["_attempts"], r.handoffs_repaired),
    ]
    for rate, part, whole in pairs:
        assert rate == (part / whole if whole else None)
    if r.handoffs_repaired:
        seconds = expected["_seconds"] / r.handoffs_repaired
        assert r.time_to_repair_s == pytest.approx(seconds, rel=1e-9, abs=1e-12)
    else:
        assert r.time_to_repair_s is None


def check_against_fold(store: EventStore, tops: Sequence[int] = (1, 2, 5)) -> None:
    engine = ProjectionEngine(store, [ToolgenProjection()])
    engine.catch_up("toolgen")
    fold = PlainFold(store)
    with engine.read("toolgen") as tx:
        assert latest_run(tx) == fold.latest_run()
        for run in (None, *fold.runs, "missing"):
            for spec in (None, TD, JF, "missing"):
                for top in tops:
                    got = [standing_tuple(s) for s in leaderboard(tx, spec, top, run)]
                    assert got == fold.leaderboard(spec, top, run)
                got_pareto = [msgspec.structs.astuple(p) for p in pareto(tx, spec, run)]
                assert got_pareto == fold.pareto(spec, run)
                got_epochs = [msgspec.structs.astuple(m) for m in median_ms_by_epoch(tx, spec, run)]
                expected = fold.epochs(spec, run)
                assert [g[:3] for g in got_epochs] == [x[:3] for x in expected]
                for g, x in zip(got_epochs, expected, strict=True):
                    assert g[3] == pytest.approx(x[3], rel=1e-12)
            check_rates(rates(tx, run), fold.rates(run))


def check_rates(got_rates: list[Rates], expected_rates: dict[str | None, dict[str, Any]]) -> None:
    assert [r.spec_id for r in got_rates] == [
        *sorted(k for k in expected_rates if k is not None),
        None,
    ]
    for r in got_rates:
        expected = expected_rates[r.spec_id]
        check_rate_values(r, expected)
        assert rates_dict(r) == {k: v for k, v in expected.items() if v and not k.startswith("_")}


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(log=toolgen_logs())
def test_read_models_match_a_plain_fold_of_the_raw_events(backend: Backend, log: Log) -> None:
    with fresh_ledger(backend) as store:
        half = len(log) // 2  # two runs, so that every query's run scope is exercised
        append_log(store, log[:half], run_id="r1")
        append_log(store, log[half:], run_id="r2")
        check_against_fold(store)


# -- a hand-written tournament -----------------------------------------------------------


def synthesized(tool: str, spec: str, style: ImplStyle, epoch: int) -> ToolSynthesized:
    return ToolSynthesized(
        tool_id=tool,
        spec_id=spec,
        impl_style=style,
        epoch=epoch,
        anneal_temp=1.0,
        budgets=Budgets(timeout_ms=2000.0 - 25.0 * epoch, memory_mb=128.0 - 1.6 * epoch),
        code_sha256=sha(tool),
        sbom_sha256=sha(f"{tool}/SBOM.json"),
    )


def evaluated(
    tool: str,
    spec: str,
    style: ImplStyle,
    epoch: int,
    *,
    fitness: float,
    median_ms: float | None,
    correctness: float = 1.0,
    stability: float = 1.0,
) -> ToolEvaluated:
    return ToolEvaluated(
        tool_id=tool,
        spec_id=spec,
        impl_style=style,
        epoch=epoch,
        correctness=correctness,
        median_ms=median_ms,
        budget_ms=2000.0,
        performance=1.0 if median_ms is not None else 0.0,
        stability=stability,
        diversity_bonus=0.0,
        components=FitnessComponents(
            correctness=correctness, safety=1.0, performance=1.0, robustness=1.0, documentation=1.0
        ),
        fitness=fitness,
    )


def handoff(hid: str, tool: str, style: ImplStyle, epoch: int) -> HandoffRequested:
    return HandoffRequested(
        handoff_id=hid,
        tool_id=tool,
        spec_path=f"toolgen/specs/{TD}.json",
        bundle_dir=f"bundles/{tool}",
        epoch=epoch,
        impl_style=style,
        reason="toolgen_incorrect",
        metrics=HandoffMetrics(correctness=0.0, fitness=0.6),
    )


def challenger(tool: str, parent: str, hid: str, epoch: int, code: str) -> ChallengerEntered:
    return ChallengerEntered(
        tool_id=tool,
        spec_id=TD,
        impl_style=ImplStyle.TRIE,
        epoch=epoch,
        lineage=Lineage.REPAIRLAB_FIXED,
        parent_tool_id=parent,
        handoff_id=hid,
        code_sha256=code,
    )


SET, TRIE, LSH = ImplStyle.SET, ImplStyle.TRIE, ImplStyle.LSH

# B fails, is handed off (h1), the first repair times out, the second succeeds,
# B-r1 re-enters as a challenger in epoch 1 and wins. C is re-evaluated and then
# ties A exactly: A posted the score first and ranks above. B-r1 is handed off
# again (h2, no attempt yet) and B-r2 enters with no known repair: generation 2.
TOURNAMENT: Log = [
    ("toolgen", synthesized("A", TD, SET, 0)),
    ("toolgen", evaluated("A", TD, SET, 0, fitness=0.90, median_ms=0.32)),
    ("toolgen", synthesized("B", TD, TRIE, 0)),
    ("toolgen", evaluated("B", TD, TRIE, 0, fitness=0.60, median_ms=0.5, correctness=0.0)),
    ("toolgen", handoff("h1", "B", TRIE, 0)),
    ("repairlab", RepairAttempted(handoff_id="h1", attempt=1, agent="baseline", timeout_s=180.0)),
    (
        "repairlab",
        RepairFailed(
            handoff_id="h1",
            attempt=1,
            failure=RepairFailure.TIMEOUT,
            exit_code=None,
            duration_s=180.0,
        ),
    ),
    ("repairlab", RepairAttempted(handoff_id="h1", attempt=2, agent="baseline", timeout_s=180.0)),
    (
        "repairlab",
        RepairSucceeded(
            handoff_id="h1", attempt=2, repaired_code_sha256=sha("B-fixed"), duration_s=41.2
        ),
    ),
    ("toolgen", synthesized("C", TD, LSH, 0)),
    ("toolgen", evaluated("C", TD, LSH, 0, fitness=0.80, median_ms=0.40, stability=0.5)),
    ("toolgen", challenger("B-r1", "B", "h1", 1, sha("B-fixed"))),
    ("toolgen", evaluated("B-r1", TD, TRIE, 1, fitness=0.95, median_ms=0.26)),
    ("toolgen", evaluated("C", TD, LSH, 1, fitness=0.90, median_ms=0.32)),
    ("toolgen", handoff("h2", "B-r1", TRIE, 1)),
    ("toolgen", challenger("B-r2", "B-r1", "h2", 2, sha("B-fixed-again"))),
    ("toolgen", evaluated("B-r2", TD, TRIE, 2, fitness=0.10, median_ms=0.8)),
    ("toolgen", synthesized("D", JF, SET, 0)),
    ("toolgen", evaluated("D", JF, SET, 0, fitness=0.70, median_ms=None, correctness=0.0)),
    ("toolgen", evaluated("E", JF, TRIE, 0, fitness=0.70, median_ms=0.09)),
]


def test_a_repaired_challenger_wins_the_tournament(backend: Backend) -> None:
    with fresh_ledger(backend) as store:
        append_log(store, TOURNAMENT)
        check_against_fold(store, tops=(1, 3, 5, 10))
        engine = ProjectionEngine(store, [ToolgenProjection()])
        engine.catch_up("toolgen")
        with engine.read("toolgen") as tx:
            board = leaderboard(tx, TD, 10)
            top_jf = leaderboard(tx, JF, 1)
            epochs = median_ms_by_epoch(tx)
            by_spec = {r.spec_id: r for r in rates(tx)}
    assert [(s.rank, s.tool_id) for s in board] == [
        (1, "B-r1"),
        (2, "A"),
        (3, "C"),
        (4, "B"),
        (5, "B-r2"),
    ]
    winner, c = board[0], board[2]
    assert (winner.lineage, winner.parent_tool_id, winner.generation) == ("repairlab_fixed", "B", 1)
    assert (winner.repair_attempt, winner.chain, winner.epoch) == (2, ["B", "B-r1"], 1)
    assert (c.evaluations, c.epoch, c.stability, c.median_ms) == (2, 1, 1.0, 0.32)  # re-evaluated
    assert (board[4].generation, board[4].chain, board[4].repair_attempt) == (
        2,
        ["B", "B-r1", "B-r2"],
        None,
    )
    assert (board[1].lineage, board[1].generation, board[1].chain) == ("original", 0, ["A"])
    # Equal fitness: the tool that ran beats the one that did not.
    assert [s.tool_id for s in top_jf] == ["E"]
    assert [(m.spec_id, m.epoch, m.tools) for m in epochs] == [
        (JF, 0, 1),
        (TD, 0, 3),
        (TD, 1, 2),
        (TD, 2, 1),
    ]
    assert [m.median_ms for m in epochs] == pytest.approx([0.09, 0.40, 0.29, 0.8])
    td = by_spec[TD]
    assert (td.tools_evaluated, td.tools_handed_off, td.handoff_rate) == (5, 2, 0.4)
    assert (td.handoffs, td.handoffs_repaired, td.handoff_success_rate) == (2, 1, 0.5)
    assert (td.repair_attempts, td.repairs_succeeded, td.repairs_failed) == (2, 1, 1)
    assert td.repair_success_rate == 0.5
    assert (by_spec[JF].handoff_rate, by_spec[JF].repair_success_rate) == (0.0, None)
    assert by_spec[None].handoff_rate == pytest.approx(2 / 7)


def test_leaderboard_cli_prints_a_table_and_json_lines(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    url = backend.fresh_url()
    init_store(url)
    with open_ledger(url, strict=False) as store:
        append_log(store, TOURNAMENT)
    argv = ["--db", url, "toolgen", "leaderboard"]
    assert run([*argv, "--spec", TD, "--top", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["rank"], d["tool_id"], d["fitness"]) for d in lines] == [
        (1, "B-r1", 0.95),
        (2, "A", 0.9),
        (3, "C", 0.9),
    ]
    assert lines[0]["chain"] == ["B", "B-r1"] and lines[0]["lineage"] == "repairlab_fixed"
    assert run([*argv, "--format", "table"]) == 0  # piped, the default is JSON (issue #17)
    table = capsys.readouterr().out
    assert table.splitlines()[:2] == ["run (all)", f"spec {JF}"] and f"spec {TD}" in table
    assert "repairlab_fixed g2 <- B-r1 <- B" in table
    assert "repairlab_fixed g1 <- B (repair attempt 2)" in table
    assert "ranked by fitness desc, then median_ms asc" in table  # the tie-break keys (#15)
    assert run([*argv, "--top", "0"]) == 2
    assert run([*argv[:3], "rates", "--json"]) == 0
    overall = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (overall["spec_id"], overall["handoffs"], overall["repairs_succeeded"]) == (None, 2, 1)
    assert run([*argv[:3], "epochs", "--spec", TD, "--format", "table"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == [
        "spec",
        "epoch",
        "tools",
        "median_ms",
    ]


def test_read_verbs_default_to_the_latest_run(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue #15: leaderboard/rates/epochs show one run, the latest unless --run says.
    url = backend.fresh_url()
    init_store(url)
    later: Log = [
        ("toolgen", synthesized("Z", TD, SET, 0)),
        ("toolgen", evaluated("Z", TD, SET, 0, fitness=0.5, median_ms=2.0)),
    ]
    with open_ledger(url, strict=False) as store:
        append_log(store, TOURNAMENT, run_id="first")
        append_log(store, later, run_id="second")
    argv = ["--db", url, "toolgen"]

    def tools(*extra: str) -> set[str]:
        assert run([*argv, "leaderboard", "--json", "--top", "10", *extra]) == 0
        return {json.loads(line)["tool_id"] for line in capsys.readouterr().out.splitlines()}

    assert tools() == {"Z"}
    assert tools("--run", "first") == {"A", "B", "C", "B-r1", "B-r2", "D", "E"}
    assert tools("--run", "all") == tools("--run", "first") | {"Z"}
    assert run([*argv, "rates", "--json"]) == 0
    overall = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (overall["tools_evaluated"], overall["handoffs"]) == (1, 0)
    assert run([*argv, "epochs", "--json", "--run", "first"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4
    assert run([*argv, "rates", "--run", "nosuch"]) == 2  # an unknown run is a usage error
    assert "no toolgen run 'nosuch'" in capsys.readouterr().err
