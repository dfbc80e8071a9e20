"""Reserved namespaces and the one name policy, through the CLI, the HTTP API and Python
(issue #18). Every refusal leaves the log exactly as it was (same head, same head hash).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labledger.api import api_token, create_app
from labledger.errors import InvalidEvent, ReservedName
from labledger.events.runs import RunAbandoned, RunFinished, RunOutcome
from labledger.events.security import CommandRejected, RejectReason
from labledger.ledger import open_ledger
from labledger.security import KeyRing
from labledger.store import NewEvent, StreamAppend, init_store, open_store
from labledger.testing.backends import Backend
from tests.cli.test_cli import cli

KEY_ID, SECRET = "k-api", b"api-token-secret-0123456789abcdef"
FORGED = {
    "type": "security.CommandRejected",
    "actor": "labledger.gate",
    "data": {
        "command_type": "esper.AdaptationCommand",
        "command_id": "cmd-1",
        "reason": "bad_signature",
        "command_digest": "0" * 64,
        "key_id": "k-1",
        "nonce": "n-1",
        "detail": "forged by a writer",
    },
}


@pytest.fixture
def url(backend: Backend, tmp_path: Path) -> str:
    url = backend.fresh_url()
    init_store(url)
    with open_ledger(url, strict=False, keyring=KeyRing()) as store:
        store.append("notes", [NewEvent.from_json("lab.Note", {"text": "before"})])
    return url


@pytest.fixture
def client(url: str) -> Iterator[TestClient]:
    app = create_app(url, keyring=KeyRing({KEY_ID: SECRET}))
    with TestClient(app, base_url="http://localhost") as c:  # a Host the allow-list admits
        yield c


AUTH = {"Authorization": f"Bearer {api_token(KEY_ID, SECRET)}"}


def fingerprint(url: str) -> tuple[int, str]:
    with open_store(url, read_only=True) as store:
        return store.head(), store.verify().head_hash


def test_a_forged_gate_record_is_refused_on_all_three_paths(
    url: str, client: TestClient, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(url)
    line = json.dumps(FORGED).encode() + b"\n"
    for stream in ("security-rejections", "anywhere"):
        code, out, err = cli(url, "append", stream, stdin=line, capsys=capsys)
        assert (code, out) == (4, "") and "reserved for the gate" in err
        answer = client.post(f"/api/streams/{stream}/events", json=FORGED, headers=AUTH)
        assert answer.status_code == 403 and answer.json()["error"] == "ReservedName"
    forged = CommandRejected(
        command_type="esper.AdaptationCommand",
        command_id="cmd-1",
        reason=RejectReason.BAD_SIGNATURE,
        command_digest="0" * 64,
        key_id="k-1",
        nonce="n-1",
    )
    with open_ledger(url, strict=False, keyring=KeyRing()) as store:
        with pytest.raises(ReservedName):
            store.append_many([StreamAppend("security-rejections", [forged.to_new_event()])])
        with pytest.raises(ReservedName, match="security-"):
            store.append("security-keys", [NewEvent.from_json("lab.Note", {"text": "x"})])
    assert fingerprint(url) == before
    assert cli(url, "audit", "--rejected", capsys=capsys)[1] == ""  # no forged link to show


def test_a_run_lifecycle_event_on_behalf_of_another_run_is_refused(url: str) -> None:
    before = fingerprint(url)
    finished = RunFinished(outcome=RunOutcome.SUCCEEDED)
    with open_ledger(url, strict=False, keyring=KeyRing()) as store:
        with pytest.raises(ReservedName, match="on behalf of another run"):
            store.append("dream-run-a", [finished.to_new_event(run_id="run-b")])
        assert fingerprint(url) == before
        # The reaper writes for a run, into that run's own stream: admitted.
        abandoned = RunAbandoned(last_heartbeat_seq=0, silent_for_s=90.0, reaper="reaper")
        store.append("dream-run-a", [abandoned.to_new_event(run_id="run-a")])
        store.append("run-a", [finished.to_new_event(run_id="run-a")])


BAD_STREAMS = [
    ("a b", "no whitespace"),
    ("a/../b", "'..'"),
    ("/lead", "no part is empty"),
    ("x" * 257, "at most 256 bytes"),
    ("é" * 129, "at most 256 bytes"),
    ("tab\there", "control characters"),
    ("esc\x1b[31m", "control characters"),
    ("rtl\u202eexe", "control characters"),
    ("lone\udcffsurrogate", "valid UTF-8"),
]


@pytest.mark.parametrize(("stream", "rule"), BAD_STREAMS)
def test_bad_stream_names_are_refused_by_cli_and_python(
    url: str, stream: str, rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(url)
    note = b'{"type": "lab.Note", "data": {"text": "x"}}\n'
    code, out, err = cli(url, "append", stream, stdin=note, capsys=capsys)
    assert (code, out) == (2, "") and rule in err and "name rule" in err
    with (
        open_ledger(url, strict=False, keyring=KeyRing()) as store,
        pytest.raises(InvalidEvent, match="name rule"),
    ):
        store.append(stream, [NewEvent.from_json("lab.Note", {"text": "x"})])
    assert fingerprint(url) == before


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("bad%FFbyte", "valid UTF-8"),
        ("lone%ED%A0%80surrogate", "valid UTF-8"),
        ("a%20b", "no whitespace"),
        ("a/%2E%2E/b", "'..'"),  # a literal a/../b is normalised to b by the client itself
        ("a/%2E/b", "'..'"),
        ("a//b", "no part is empty"),
        ("tab%09here", "control characters"),
        ("x" * 257, "at most 256"),
        ("é" * 129, "at most 256"),
    ],
)
def test_bad_stream_names_are_refused_by_the_api(
    url: str, client: TestClient, path: str, rule: str
) -> None:
    before = fingerprint(url)
    note = {"type": "lab.Note", "data": {"text": "x"}}
    answer = client.post(f"/api/streams/{path}/events", json=note, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert "name rule" in answer.json()["detail"] and rule in answer.json()["detail"]
    assert fingerprint(url) == before


def test_a_newline_in_a_path_matches_no_route(url: str, client: TestClient) -> None:
    """Starlette's path pattern stops at a newline: 404 before the policy is asked."""
    before = fingerprint(url)
    note = {"type": "lab.Note", "data": {"text": "x"}}
    answer = client.post("/api/streams/nl%0Ahere/events", json=note, headers=AUTH)
    assert answer.status_code == 404 and fingerprint(url) == before


def test_names_are_stored_exactly_as_given(url: str, client: TestClient) -> None:
    note = {"type": "lab.Note", "data": {"text": "x"}, "run_id": "run-é"}
    answer = client.post("/api/streams/caf%C3%A9/part/events", json=note, headers=AUTH)
    assert answer.status_code == 201
    with open_store(url, read_only=True) as store:
        (stored,) = store.read_stream("café/part")
        assert stored.run_id == "run-é"


def test_every_envelope_id_follows_the_policy(url: str) -> None:
    with open_ledger(url, strict=False, keyring=KeyRing()) as store:
        for field, value in [("run_id", "a b"), ("correlation_id", "x\x00"), ("actor", " lead")]:
            event = NewEvent.from_json("lab.Note", {"text": "x"}, **{field: value})
            with pytest.raises(InvalidEvent, match="name rule"):
                store.append("notes", [event])
        store.append("notes", [NewEvent.from_json("lab.Note", {}, actor="Ada Lovelace")])
