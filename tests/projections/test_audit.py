"""The audit trail and the nonce ledger view (issue #4, items 5 and 7), and their CLI verbs.

Both are checked against independent scans of the stored log.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labledger import EventStore
from labledger.events.esper import AdaptationCommand, FieldReport
from labledger.events.security import CommandRejected
from labledger.events.typed import typed
from labledger.ledger import open_ledger
from labledger.projections import Projection, ProjectionEngine
from labledger.projections.audit import (
    AuditProjection,
    NonceLedgerProjection,
    rejected,
    trail,
)
from labledger.security import KeyRing
from labledger.testing.backends import Backend
from labledger.testing.projection_contract import SETTINGS, Log, ProjectionContract, fresh_ledger
from tests.cli.test_cli import cli
from tests.projections.test_esper_training import (
    COMMAND_IDS,
    KEY_ID,
    SCENARIO,
    SECRET,
    SEED_TYPES,
    append_esper_log,
    esper_logs,
)


class EsperLogs(ProjectionContract):
    def logs(self) -> st.SearchStrategy[Log]:
        return esper_logs()

    def prepare(self, store: EventStore, log: Log) -> None:
        append_esper_log(store, log)


class AuditContract(EsperLogs):
    def make_projection(self) -> Projection:
        return AuditProjection()


class NonceLedgerContract(EsperLogs):
    def make_projection(self) -> Projection:
        return NonceLedgerProjection()

    def logs(self) -> st.SearchStrategy[Log]:
        return esper_logs(max_size=10)  # only commands and refusals matter here


class TestSqliteAudit(AuditContract):
    backend_fixture = "sqlite_backend"


class TestPostgresAudit(AuditContract):
    backend_fixture = "postgres_backend"


class TestSqliteNonceLedger(NonceLedgerContract):
    backend_fixture = "sqlite_backend"


class TestPostgresNonceLedger(NonceLedgerContract):
    backend_fixture = "postgres_backend"


# -- independent scans -------------------------------------------------------------


def expected_chain(store: EventStore, command_id: str) -> list[tuple[int, str]]:
    """(position, step) of every link naming ``command_id``, straight from the log."""
    links = []
    for t in typed(store.read_all()):
        e: Any = t.event
        if getattr(e, "command_id", None) != command_id:
            continue
        if isinstance(e, AdaptationCommand):
            links += [(t.position, "command"), (t.position, "verification")]
        elif isinstance(e, CommandRejected):
            links.append((t.position, "verification"))
        elif isinstance(e, FieldReport):
            links += [(t.position, "field_report"), (t.position, "reward")]
        elif isinstance(e, SEED_TYPES):
            links.append((t.position, "effect"))
    return links


def expected_nonces(store: EventStore) -> tuple[dict[str, int], Counter[tuple[str, str]]]:
    nonces, refusals = {}, Counter[tuple[str, str]]()
    for t in typed(store.read_all()):
        if isinstance(t.event, AdaptationCommand):
            nonces.setdefault(t.event.security.nonce, t.position)
        elif isinstance(t.event, CommandRejected):
            refusals[(t.event.reason.value, t.event.key_id or "")] += 1
    return nonces, refusals


def _engine(store: EventStore) -> ProjectionEngine:
    engine = ProjectionEngine(store, [AuditProjection(), NonceLedgerProjection()])
    engine.run()
    return engine


@SETTINGS
@given(log=esper_logs(max_size=24))
def test_trails_and_nonces_equal_independent_scans(backend: Backend, log: Log) -> None:
    with fresh_ledger(backend) as store:
        append_esper_log(store, log)
        engine = _engine(store)
        with engine.read("audit") as tx:
            for cid in COMMAND_IDS:
                got = [(link["position"], link["step"]) for link in trail(tx, cid)]
                assert got == expected_chain(store, cid)
            refused = [r["position"] for r in rejected(tx)]
        scan = [t.position for t in typed(store.read_all()) if isinstance(t.event, CommandRejected)]
        assert refused == scan
        nonces, refusals = expected_nonces(store)
        with engine.read("nonce_ledger") as tx:
            table, ref = tx.table("nonces"), tx.table("refusals")
            got_nonces = {r.nonce: r.position for r in tx.conn.execute(table.select())}
            got_refusals = {(r.reason, r.key_id): r.total for r in tx.conn.execute(ref.select())}
        assert got_nonces == nonces and got_refusals == dict(refusals)


# -- scenarios and CLI ----------------------------------------------------------------


@pytest.fixture
def lab(backend: Backend, capsys: pytest.CaptureFixture[str]) -> str:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    with open_ledger(url, keyring=KeyRing({KEY_ID: SECRET})) as store:
        append_esper_log(store, SCENARIO)
        replay: Log = [("r1|replay", SCENARIO[2][1])]  # "good" again, with its nonce: refused
        append_esper_log(store, [*SCENARIO[2:3], *replay])  # n0 is new here; then replayed
    return url


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_accepted_and_reported_command(lab: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(lab, "audit", "good", capsys=capsys)
    assert code == 0, err
    chain = _lines(out)
    assert [(x["step"], x["position"]) for x in chain] == [
        ("command", 3),
        ("verification", 3),
        ("effect", 5),
        ("field_report", 7),
        ("reward", 7),
        ("command", 15),  # the same id re-issued under a new nonce: admitted
        ("verification", 15),
        ("verification", 16),  # its replay: refused
    ]
    command, admitted, effect, report, reward = chain[:5]
    assert (command["policy_version"], command["reason"], command["actor"]) == (
        "tamiyo-v3",
        "plateau",
        "tamiyo",
    )
    assert (admitted["verdict"], admitted["actor"], admitted["key_id"]) == (
        "admitted",
        "labledger.gate",
        KEY_ID,
    )
    assert effect["kind"] == "esper.SeedGerminated" and effect["actor"] == "kasmina"
    assert (report["outcome"], reward["value"]) == ("SUCCESS", pytest.approx(0.1))  # reward v3
    assert (chain[-1]["verdict"], chain[-1]["reason"]) == ("rejected", "replayed_nonce")

    code, text, _ = cli(lab, "audit", "good", "--text", capsys=capsys)
    assert code == 0 and "decided by tamiyo-v3" in text and "accuracy_delta" in text


def test_rejected_commands_are_listed(lab: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(lab, "audit", "--rejected", capsys=capsys)
    rows = _lines(out)
    assert code == 0 and [(r["position"], r["command_id"], r["reason"]) for r in rows] == [
        (4, "forged", "missing_signature"),
        (16, "good", "replayed_nonce"),
    ]
    assert all(r["key_id"] == KEY_ID and r["actor"] == "labledger.gate" for r in rows)
    code, out, _ = cli(lab, "audit", "forged", capsys=capsys)
    assert code == 0 and [x["step"] for x in _lines(out)] == ["verification"]


def test_unknown_command_and_bad_usage_exit_2(lab: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(lab, "audit", "nope", capsys=capsys)
    assert (code, out) == (2, "") and "no command 'nope'" in err
    assert cli(lab, "audit", capsys=capsys)[0] == 2
    assert cli(lab, "audit", "good", "--rejected", capsys=capsys)[0] == 2


def test_nonce_ledger_view(lab: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(lab, "esper", "nonces", capsys=capsys)
    doc = json.loads(out)
    assert code == 0
    assert doc["admitted"] == [
        {"key_id": KEY_ID, "count": 4, "first_position": 3, "last_position": 15}
    ]
    assert {(r["reason"], r["total"]) for r in doc["refused"]} == {
        ("missing_signature", 1),
        ("replayed_nonce", 1),
    }
    assert doc["store"]["size"] >= 0
