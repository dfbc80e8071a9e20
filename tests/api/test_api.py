"""The HTTP API on both backends (issue #9): reads, auth, writes, status codes, tail, metrics."""

from __future__ import annotations

import hashlib
import json
import uuid

import msgspec
import pytest
from fastapi.testclient import TestClient

from labledger.api import api_token, create_app
from labledger.api._errors import http_status
from labledger.errors import (
    CommandRefused,
    CorruptionDetected,
    EventDecodeError,
    IdempotencyConflict,
    InvalidEvent,
    ProjectionError,
    SchemaNotInitialized,
    StoreUnavailable,
    UsageError,
    WrongExpectedVersion,
)
from labledger.security import KeyRing, sign
from labledger.store import EventStore
from tests.api._lab import KEY_ID, SECRET, command, fill_esper, ring


def note(text: str = "hi", **extra: object) -> dict[str, object]:
    return {"type": "lab.Note", "data": {"text": text}, **extra}


def test_status_mapping_matches_the_cli_exit_codes() -> None:
    assert http_status(WrongExpectedVersion("s", "no_stream", 0)) == 409
    assert http_status(InvalidEvent("x")) == 422
    assert http_status(EventDecodeError("x")) == 422
    assert http_status(IdempotencyConflict("id", "x")) == 422
    assert http_status(UsageError("x")) == 422
    assert http_status(CommandRefused("bad_signature")) == 403
    assert http_status(StoreUnavailable("x")) == 503
    assert http_status(SchemaNotInitialized("u", None, "h")) == 503
    assert http_status(CorruptionDetected("x", 3)) == 500
    assert http_status(ProjectionError("x")) == 500


def test_writes_need_a_token_from_the_key_ring(client: TestClient, auth: dict[str, str]) -> None:
    assert client.get("/api/head").json() == {"head": 0}  # reads open on loopback
    refused = client.post("/api/streams/notes/events", json=note())
    assert refused.status_code == 401 and "Bearer" in refused.headers["www-authenticate"]
    other = api_token(KEY_ID, b"another-secret-0123456789abcdef")
    for header in (f"Bearer {other}", "Bearer nope", f"Basic {api_token(KEY_ID, SECRET)}"):
        r = client.post("/api/streams/notes/events", json=note(), headers={"Authorization": header})
        assert r.status_code == 401
    assert client.get("/api/head").json() == {"head": 0}
    ok = client.post("/api/streams/notes/events?expect=no-stream", json=note(), headers=auth)
    assert ok.status_code == 201, ok.text
    assert ok.json()["first_position"] == 1
    event = client.get("/api/events/1").json()
    assert (event["data"], event["actor"]) == ({"text": "hi"}, f"api:{KEY_ID}")


def test_a_non_loopback_bind_needs_a_token_to_read(ledger_url: str, auth: dict[str, str]) -> None:
    with TestClient(create_app(ledger_url, keyring=ring(), host="0.0.0.0")) as c:
        assert c.get("/api/runs").status_code == 401
        assert c.get("/ui/runs").status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.get("/api/runs", headers=auth).status_code == 200
        assert c.get("/healthz").json()["ok"] is True
    with pytest.raises(UsageError, match="key ring"):
        create_app(ledger_url, keyring=KeyRing(), host="10.1.2.3")


def test_errors_map_to_status_codes(client: TestClient, auth: dict[str, str]) -> None:
    post = "/api/streams/s/events"
    eid = str(uuid.uuid4())
    assert client.post(post, json=note(id=eid), headers=auth).status_code == 201
    again = client.post(post, json=note(id=eid), headers=auth)
    assert (again.status_code, again.json()["already_appended"]) == (200, True)
    conflict = client.post(f"{post}?expect=no-stream", json=note(), headers=auth)
    assert conflict.status_code == 409
    assert (conflict.json()["error"], conflict.json()["actual"]) == ("WrongExpectedVersion", 0)
    assert client.post(post, json=note("other", id=eid), headers=auth).status_code == 422
    bad_bodies = [
        b'{"type": "lab.Note", "data": {}, "data": {}}',  # duplicate keys
        b'{"type": "lab.Note", "data": {"x": NaN}}',
        b"[]",
        b"not json",
        b'{"type": "lab.Note", "data": {}, "color": "red"}',
    ]
    for body in bad_bodies:
        r = client.post(post, content=body, headers=auth | {"Content-Type": "application/json"})
        assert r.status_code == 422, body[:40]
    over = b" " * (1 << 20) + b"{}"  # over the limit: 413 before it is read (issue #18)
    r = client.post(post, content=over, headers=auth | {"Content-Type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (413, "BodyTooLarge")
    assert client.post(f"{post}?expect=soon", json=note(), headers=auth).status_code == 422
    assert client.get("/api/head").json() == {"head": 1}


def test_a_rejected_command_is_403_and_audited(client: TestClient, auth: dict[str, str]) -> None:
    forged = sign(command("forged"), KeyRing({KEY_ID: b"not-the-lab-secret-0123456789ab"}))
    body = json.loads(msgspec.json.encode(forged))
    body.pop("type", None)
    doc = {"type": "esper.AdaptationCommand", "data": body}
    r = client.post("/api/streams/esper-x/events", json=doc, headers=auth)
    assert r.status_code == 403, r.text
    assert r.json()["reason"] == "bad_signature"
    rejected = client.get("/api/audit/rejected").json()
    assert [x["command_id"] for x in rejected] == ["forged"]
    assert 'labledger_api_rejections_total{reason="bad_signature"} 1' in client.get("/metrics").text


def test_runs_events_and_read_models(client: TestClient, store: EventStore) -> None:
    cid = fill_esper(store, ring(), "esper-1")
    runs = client.get("/api/runs").json()
    assert [(r["run_id"], r["subsystem"], r["status"]) for r in runs] == [
        ("esper-1", "esper", "finished")
    ]
    assert client.get("/api/runs/esper-1").json()["events"] == runs[0]["events"]
    assert client.get("/api/runs/nope").status_code == 404
    pages, start = [], 0
    while start is not None:
        page = client.get(f"/api/runs/esper-1/events?from_position={start}&limit=4").json()
        pages.append([e["position"] for e in page["events"]])
        start = page["next_from_position"]
    assert [p for page in pages for p in page] == list(range(1, store.head() + 1)) and len(
        pages
    ) > 2
    stream = client.get("/api/streams/esper-esper-1/events?from_version=2&limit=2").json()
    assert [e["version"] for e in stream["events"]] == [2, 3]
    series = client.get("/api/runs/esper-1/esper").json()
    assert [m["epoch"] for m in series["metrics"]] == list(range(6))
    assert {m["kind"] for m in series["markers"]} == {"command", "germinated", "stagechanged"}
    trail = client.get(f"/api/audit/commands/{cid}").json()
    assert [link["step"] for link in trail][:2] == ["command", "verification"]
    assert "reward" in [link["step"] for link in trail]
    assert client.get("/api/audit/commands/none").status_code == 404
    assert client.get("/api/esper/seeds").json()[0]["slot"] == "s0"
    assert client.get("/api/esper/training-set").json()["transitions"] == 1
    statuses = {p["name"]: p["state"] for p in client.get("/api/projections").json()}
    assert statuses["runs"] == "current"
    assert client.get("/api/verify").json()["ok"] is True
    assert client.get("/api/nonces").json()["store"]["size"] == 1


def test_training_set_manifest_and_download(client: TestClient, store: EventStore) -> None:
    fill_esper(store, ring())
    manifest = client.get("/api/esper/training-set/manifest").json()
    assert manifest["transitions"] == 1 and manifest["log"]["head_position"] == store.head()
    blob = client.get("/api/esper/training-set/download")
    assert blob.status_code == 200
    assert blob.headers["x-tensors-sha256"] == manifest["tensors_sha256"]
    assert hashlib.sha256(blob.content).hexdigest() == manifest["tensors_sha256"]


def test_live_tail_filters_and_resumes(client: TestClient, store: EventStore) -> None:
    fill_esper(store, ring())
    url = "/api/tail?type=esper.SystemStateReported&stream_prefix=esper-&limit=3"
    with client.stream("GET", url) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    messages = [m for m in text.split("\n\n") if m.startswith("id:")]
    ids = [int(m.split("\n")[0].removeprefix("id: ")) for m in messages]
    assert len(ids) == 3 and all("event: esper.SystemStateReported" in m for m in messages)
    with client.stream("GET", url, headers={"Last-Event-ID": str(ids[1])}) as r:
        resumed = "".join(r.iter_text())
    assert f"id: {ids[2]}\n" in resumed and f"id: {ids[1]}\n" not in resumed
    assert "labledger_api_subscribers 0" in client.get("/metrics").text


def test_metrics_count_appends_latency_and_lag(client: TestClient, auth: dict[str, str]) -> None:
    client.post("/api/streams/n/events", json=[note(), note("2")], headers=auth)
    client.post("/api/streams/n/events", json=note(), headers={})
    client.get("/api/verify")
    text = client.get("/metrics").text
    assert 'labledger_api_events_appended_total{type="other"} 2.0' in text  # not catalogued
    assert "labledger_api_append_duration_seconds_count 1" in text
    assert 'labledger_api_rejections_total{reason="unauthorized"} 1' in text
    assert 'labledger_projection_lag_events{projection="runs"}' in text
    assert "labledger_verify_failures_total 0" in text and "labledger_head_position 2" in text


def test_openapi_document_names_the_token(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert "labledgerToken" in doc["components"]["securitySchemes"]
    assert "post" in doc["paths"]["/api/streams/{stream}/events"]
