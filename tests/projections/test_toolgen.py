"""The ToolGen read models (issue #3: leaderboards), on both backends.

Every number is checked against ``PlainFold``, an independent computation over
the raw events (dicts and a ``sorted``), on generated logs and on a hand-written
tournament where a failing tool is handed off, repaired, and wins as a challenger.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections import Counter, defaultdict
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
from labledger.ledger import open_ledger
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.toolgen import (
    Rates,
    Standing,
    ToolgenProjection,
    leaderboard,
    median_ms_by_epoch,
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
}


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
    """The read models recomputed from the raw events with dicts and ``sorted``."""

    def __init__(self, log: Log) -> None:
        self.latest: dict[str, tuple[int, ToolEvaluated]] = {}
        self.evaluations: Counter[str] = Counter()
        self.epoch_ms: dict[tuple[str, int, str], float | None] = {}
        self.spec: dict[str, str] = {}  # from synthesis or challenger entry
        self.entry: dict[str, tuple[ChallengerEntered, int | None]] = {}
        self.handoffs: dict[str, HandoffRequested] = {}
        self.attempts: dict[tuple[str, int], tuple[str, str | None]] = {}
        for index, (_, event) in enumerate(log):
            self.fold(index, event)

    def fold(self, index: int, e: Event) -> None:
        match e:
            case ToolEvaluated():
                self.latest[e.tool_id] = (index, e)
                self.evaluations[e.tool_id] += 1
                self.epoch_ms[(e.spec_id, e.epoch, e.tool_id)] = e.median_ms
            case ToolSynthesized():
                self.spec[e.tool_id] = e.spec_id
            case ChallengerEntered():
                self.spec[e.tool_id] = e.spec_id
                done = [
                    (n, code)
                    for (h, n), (outcome, code) in self.attempts.items()
                    if h == e.handoff_id and outcome == "succeeded"
                ]
                fixed = [n for n, code in done if code == e.code_sha256] or [n for n, _ in done]
                self.entry[e.tool_id] = (e, max(fixed, default=None))
            case HandoffRequested():
                self.handoffs[e.handoff_id] = e
            case RepairAttempted():
                self.attempts.setdefault((e.handoff_id, e.attempt), ("pending", None))
            case RepairSucceeded():
                self.attempts[(e.handoff_id, e.attempt)] = ("succeeded", e.repaired_code_sha256)
            case RepairFailed():
                self.attempts[(e.handoff_id, e.attempt)] = ("failed", None)

    def chain(self, tool: str) -> list[str]:
        chain = [tool]
        while chain[-1] in self.entry and self.entry[chain[-1]][0].parent_tool_id not in chain:
            chain.append(self.entry[chain[-1]][0].parent_tool_id)
        return chain[::-1]

    def leaderboard(self, spec: str | None, top: int) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        for spec_id in sorted({e.spec_id for _, e in self.latest.values()}):
            if spec not in (None, spec_id):
                continue
            mine = [(i, e) for i, e in self.latest.values() if e.spec_id == spec_id]
            mine.sort(
                key=lambda p: (-p[1].fitness, p[1].median_ms is None, p[1].median_ms or 0, p[0])
            )
            for rank, (_, e) in enumerate(mine[:top], start=1):
                entry, attempt = self.entry.get(e.tool_id, (None, None))
                chain = self.chain(e.tool_id)
                lineage = entry.lineage.value if entry else "original"
                parent = entry.parent_tool_id if entry else None
                rows.append(
                    (
                        *(spec_id, rank, e.tool_id, e.fitness, e.epoch, e.impl_style.value),
                        *(e.median_ms, e.stability, e.correctness, self.evaluations[e.tool_id]),
                        *(lineage, parent, len(chain) - 1, attempt, chain),
                    )
                )
        return rows

    def epochs(self, spec: str | None) -> list[tuple[str, int, int, float]]:
        groups: dict[tuple[str, int], list[float]] = defaultdict(list)
        for (spec_id, epoch, _), ms in self.epoch_ms.items():
            if ms is not None and spec in (None, spec_id):
                groups[(spec_id, epoch)].append(ms)
        # Exact rational median: no overflow and no rounding until the end.
        exact = {k: statistics.median(Fraction(v) for v in vs) for k, vs in groups.items()}
        return [(s, e, len(groups[(s, e)]), float(exact[(s, e)])) for s, e in sorted(groups)]

    def rates(self) -> dict[str | None, dict[str, Any]]:
        tool_spec = {t: e.spec_id for t, (_, e) in self.latest.items()}

        def spec_of(h: HandoffRequested) -> str:
            return (
                tool_spec.get(h.tool_id)
                or self.spec.get(h.tool_id)
                or PurePosixPath(h.spec_path).stem
            )

        handoff_spec = {hid: spec_of(h) for hid, h in self.handoffs.items()}
        handed = {h.tool_id for h in self.handoffs.values()}
        out: dict[str | None, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        for tool, spec in tool_spec.items():
            for key in (spec, None):
                out[key]["tools_evaluated"] += 1
                out[key]["tools_handed_off"] += tool in handed
        for hid, spec in handoff_spec.items():
            ok = any(o == "succeeded" for (h, _), (o, _) in self.attempts.items() if h == hid)
            for key in (spec, None):
                out[key]["handoffs"] += 1
                out[key]["handoffs_repaired"] += ok
        for (hid, _), (outcome, _) in self.attempts.items():
            for key in {handoff_spec.get(hid), None}:
                out[key]["repair_attempts"] += 1
                out[key][f"repairs_{outcome}"] += 1
        out[None]["tools_evaluated"] += 0  # the overall row always exists
        return out


def standing_tuple(s: Standing) -> tuple[Any, ...]:
    return tuple(msgspec.structs.astuple(s))


def rates_dict(r: Rates) -> dict[str, Any]:
    counts = msgspec.structs.asdict(r)
    return {k: v for k, v in counts.items() if v and k != "spec_id" and not k.endswith("rate")}


def check_rate_values(r: Rates) -> None:
    pairs = [
        (r.handoff_rate, r.tools_handed_off, r.tools_evaluated),
        (r.handoff_success_rate, r.handoffs_repaired, r.handoffs),
        (r.repair_success_rate, r.repairs_succeeded, r.repair_attempts),
    ]
    for rate, part, whole in pairs:
        assert rate == (part / whole if whole else None)


def check_against_fold(store: EventStore, log: Log, tops: Sequence[int] = (1, 2, 5)) -> None:
    engine = ProjectionEngine(store, [ToolgenProjection()])
    engine.catch_up("toolgen")
    fold = PlainFold(log)
    with engine.read("toolgen") as tx:
        for spec in (None, TD, JF, "missing"):
            for top in tops:
                got = [standing_tuple(s) for s in leaderboard(tx, spec, top)]
                assert got == fold.leaderboard(spec, top)
            got_epochs = [msgspec.structs.astuple(m) for m in median_ms_by_epoch(tx, spec)]
            expected = fold.epochs(spec)
            assert [g[:3] for g in got_epochs] == [x[:3] for x in expected]
            for g, x in zip(got_epochs, expected, strict=True):
                assert g[3] == pytest.approx(x[3], rel=1e-12)
        got_rates = rates(tx)
    expected_rates = fold.rates()
    assert [r.spec_id for r in got_rates] == [
        *sorted(k for k in expected_rates if k is not None),
        None,
    ]
    for r in got_rates:
        check_rate_values(r)
        assert rates_dict(r) == {k: v for k, v in expected_rates[r.spec_id].items() if v}


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(log=toolgen_logs())
def test_read_models_match_a_plain_fold_of_the_raw_events(backend: Backend, log: Log) -> None:
    with fresh_ledger(backend) as store:
        append_log(store, log)
        check_against_fold(store, log)


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
        check_against_fold(store, TOURNAMENT, tops=(1, 3, 5, 10))
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
    assert table.splitlines()[0] == f"spec {JF}" and f"spec {TD}" in table
    assert "repairlab_fixed g2 <- B-r1 <- B" in table
    assert "repairlab_fixed g1 <- B (repair attempt 2)" in table
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
