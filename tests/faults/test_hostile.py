"""Harness 6 — hostile input through the Python API and the CLI.

Forged signatures, replays (also from 8 processes at once), stale and future
timestamps, oversized and malformed payloads, deep nesting and
injection-shaped strings. Every one must be refused with a typed error (the
CLI: a non-zero exit code, no traceback). A refused *signed command* appends a
``security.CommandRejected`` record to stream ``security-rejections`` by
design, so the fingerprint compared is the log **minus that stream**; "0 nonces
burned" means the nonce ledger's size is unchanged.

Broken variant caught here: a gate that skips the signature check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgspec
import pytest

from labledger import ANY, EventStore, LabledgerError, NewEvent, init_store, open_store
from labledger.cli.main import run
from labledger.events.raw import MAX_DOCUMENT_BYTES
from labledger.ledger import open_ledger
from labledger.security import REJECTIONS_STREAM, KeyRing, LabGate, sign
from labledger.store.base import CommandClaim
from labledger.testing.backends import Backend
from labledger.testing.security_contract import SECRET, command
from labledger.testing.workers import worker_env
from tests.faults.harness import figure

REPLAYERS = 8
RING = KeyRing({"k1": SECRET})
INJECTION = "'; DROP TABLE ll_events; --"
HUGE = b"9" * 5000
"""A JSON integer past Python's 4300-digit int() limit (issue #18)."""


def _now() -> dt.datetime:
    """Now, each time: a signed case must be fresh (or stale) when it is submitted."""
    return dt.datetime.now(dt.UTC)


def _signed(**kw: object) -> NewEvent:
    return sign(command(f"cmd-{time.monotonic_ns()}"), RING, **kw).to_new_event()  # type: ignore[arg-type]


def _forged() -> NewEvent:
    cmd = msgspec.structs.replace(sign(command("real"), RING, now=_now()), command_id="forged")
    return cmd.to_new_event()


def _bad_hex() -> NewEvent:
    cmd = sign(command("hex"), RING, now=_now())
    sig = cmd.security.signature
    forged = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    return msgspec.structs.replace(
        cmd, security=msgspec.structs.replace(cmd.security, signature=forged)
    ).to_new_event()


def _raw(type_name: str, data: bytes, **kw: object) -> NewEvent:
    return NewEvent(type=type_name, data=data, **kw)  # type: ignore[arg-type]


def hostile_api(
    base: NewEvent, existing: NewEvent
) -> dict[str, tuple[str, list[NewEvent], object]]:
    """name -> (stream, events, expected version); ``base`` is an accepted signed command."""
    deep = b'{"a":' * 70 + b"1" + b"}" * 70
    deeper = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"
    big = b'{"x":"' + b"a" * MAX_DOCUMENT_BYTES + b'"}'
    twice = _raw("mylab.Twice", b"{}")
    cases: dict[str, tuple[str, list[NewEvent], object]] = {
        "forged field": ("cmds", [_forged()], ANY),
        "forged signature hex": ("cmds", [_bad_hex()], ANY),
        "unknown key": (
            "cmds",
            [sign(command("u"), KeyRing({"ghost": b"g" * 32}), now=_now()).to_new_event()],
            ANY,
        ),
        "wrong secret, known key id": (
            "cmds",
            [sign(command("w"), KeyRing({"k1": b"w" * 32}), now=_now()).to_new_event()],
            ANY,
        ),
        "unsigned": ("cmds", [command("unsigned").to_new_event()], ANY),
        "replay, same stream": ("cmds", [msgspec.structs.replace(base, id=_uuid())], ANY),
        "replay, other stream": ("elsewhere", [msgspec.structs.replace(base, id=_uuid())], ANY),
        "stale 75 s": ("cmds", [_signed(now=_now() - dt.timedelta(seconds=75))], ANY),
        "stale 1 year": ("cmds", [_signed(now=_now() - dt.timedelta(days=365))], ANY),
        "future 75 s": ("cmds", [_signed(now=_now() + dt.timedelta(seconds=75))], ANY),
        "future 1 year": ("cmds", [_signed(now=_now() + dt.timedelta(days=365))], ANY),
        "good command + forged in one batch": ("cmds", [_signed(now=_now()), _forged()], ANY),
        "oversized data": ("s", [_raw("mylab.Big", big)], ANY),
        "oversized metadata": ("s", [_raw("mylab.Big", b"{}", metadata=big)], ANY),
        "nesting 70": ("s", [_raw("mylab.Deep", deep)], ANY),
        "nesting 5000": ("s", [_raw("mylab.Deep", deeper)], ANY),
        "nested metadata": ("s", [_raw("mylab.Deep", b"{}", metadata=deeper)], ANY),
        "NaN": ("s", [_raw("mylab.NaN", b'{"n": NaN}')], ANY),
        "bad UTF-8": ("s", [_raw("mylab.Utf8", b'{"s": "\xc3\x28"}')], ANY),
        "duplicate keys": ("s", [_raw("mylab.Dup", b'{"a": 1, "a": 2}')], ANY),
        "trailing garbage": ("s", [_raw("mylab.Tail", b'{"a": 1} {"b": 2}')], ANY),
        "not an object": ("s", [_raw("mylab.List", b"[1, 2]")], ANY),
        "empty bytes": ("s", [_raw("mylab.Empty", b"")], ANY),
        "typed, wrong field type": ("s", [_raw("run.Heartbeat", b'{"seq": "1; DROP"}')], ANY),
        "injection as type": ("s", [_raw(f"x.Y{INJECTION}", b"{}")], ANY),
        "injection as id": ("s", [_raw("mylab.Id", b"{}", id=f"1{INJECTION}")], ANY),
        "NUL in stream name": (f"s\x00{INJECTION}", [_raw("mylab.Ok", b"{}")], ANY),
        "stream name 300 chars": ("s" * 300, [_raw("mylab.Ok", b"{}")], ANY),
        "NUL in actor": ("s", [_raw("mylab.Ok", b"{}", actor=f"a\x00{INJECTION}")], ANY),
        "schema_version 0": ("s", [_raw("mylab.Ok", b"{}", schema_version=0)], ANY),
        "expected version -1": ("s", [_raw("mylab.Ok", b"{}")], -1),
        "expected version as text": ("s", [_raw("mylab.Ok", b"{}")], f"0{INJECTION}"),
        "expected version True": ("s", [_raw("mylab.Ok", b"{}")], True),
        "reused id, other content": (
            "s",
            [_raw(existing.type, b'{"other":1}', id=existing.id)],
            ANY,
        ),
        "same id twice in a batch": ("s", [twice, twice], ANY),
        # bad numbers (issue #18)
        "integer of 5000 digits": ("s", [_raw("mylab.Big", b'{"n": ' + HUGE + b"}")], ANY),
        "integer of 20 digits": ("s", [_raw("mylab.Big", b'{"n": 99999999999999999999}')], ANY),
        "typed, 5000-digit field": ("s", [_raw("run.Heartbeat", b'{"seq": ' + HUGE + b"}")], ANY),
        "expected version '²'": ("s", [_raw("mylab.Ok", b"{}")], "²"),
        "expected version 2**70": ("s", [_raw("mylab.Ok", b"{}")], 2**70),
    }
    return cases


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


@dataclass
class Tally:
    inputs: int = 0
    accepted: int = 0
    crashes: int = 0

    def record(self, name: str, attempt: Callable[[], object]) -> None:
        self.inputs += 1
        try:
            attempt()
        except LabledgerError:
            return
        except Exception as exc:  # anything untyped is a crash
            self.crashes += 1
            print(f"CRASH on {name}: {type(exc).__name__}: {exc}")
            return
        self.accepted += 1
        print(f"ACCEPTED: {name}")


def log_fingerprint(store: EventStore) -> tuple[str, int]:
    """SHA-256 of the log minus ``security-rejections`` (every field), and the nonce count."""
    assert store.verify().ok
    digest = hashlib.sha256()
    for e in store.read_all():
        if e.stream != REJECTIONS_STREAM:
            digest.update(msgspec.msgpack.encode(e))
    for info in store.streams():
        if info.stream != REJECTIONS_STREAM:
            digest.update(msgspec.msgpack.encode(info))
    return digest.hexdigest(), store.nonce_stats().size


@pytest.fixture
def hostile_store(sqlite_backend: Backend) -> Iterator[tuple[str, EventStore, NewEvent, NewEvent]]:
    url = sqlite_backend.fresh_url()
    init_store(url)
    with open_ledger(url, keyring=RING, strict=False) as store:
        base = _signed(now=_now(), nonce="n-base")
        store.append("cmds", [base])
        existing = NewEvent.from_json("mylab.Seeded", {"ok": True})
        store.append("s", [existing])
        yield url, store, base, existing


def _cli(args: list[str], stdin: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """The exit code and stderr of one CLI run (a traceback escaping ``run`` fails the test)."""
    err = io.StringIO()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO()))
    monkeypatch.setattr(sys, "stderr", err)
    try:
        code = run(args)
    finally:
        monkeypatch.undo()
    return code, err.getvalue()


def hostile_cli(url: str, base: NewEvent) -> dict[str, tuple[list[str], bytes]]:
    def line(type_name: str, data: object) -> bytes:
        return msgspec.json.encode({"type": type_name, "data": data}) + b"\n"

    forged = msgspec.json.decode(_forged().data)
    replay = msgspec.json.decode(base.data)
    stale = msgspec.json.decode(_signed(now=_now() - dt.timedelta(hours=2)).data)
    append = ["--db", url, "append"]
    return {
        "cli forged command": ([*append, "cmds"], line("esper.AdaptationCommand", forged)),
        "cli replayed command": ([*append, "cmds"], line("esper.AdaptationCommand", replay)),
        "cli stale command": ([*append, "cmds"], line("esper.AdaptationCommand", stale)),
        "cli malformed JSON": ([*append, "s"], b'{"type": "mylab.X", "data": {\n'),
        "cli unknown field": ([*append, "s"], b'{"type": "mylab.X", "data": {}, "sql": 1}\n'),
        "cli id injection": (
            [*append, "s"],
            b'{"type": "mylab.X", "data": {}, "id": "' + INJECTION.encode() + b'"}\n',
        ),
        "cli deep nesting": (
            [*append, "s"],
            b'{"type":"mylab.X","data":' + b'{"a":' * 200 + b"1" + b"}" * 201 + b"\n",
        ),
        "cli oversized line": (
            [*append, "s"],
            b'{"type":"mylab.X","data":{"x":"' + b"a" * (MAX_DOCUMENT_BYTES + 10) + b'"}}\n',
        ),
        "cli bad --expect": ([*append, "s", "--expect", f"1{INJECTION}"], line("mylab.X", {})),
        "cli empty stdin": ([*append, "s"], b""),
        "cli NUL bytes": ([*append, "s"], b"\x00\x00\x00\n"),
        **bad_numbers_cli(url),
    }


def bad_numbers_cli(url: str) -> dict[str, tuple[list[str], bytes]]:
    """Numbers that used to escape as a traceback with exit 1 (issue #18): exit 2 now."""
    ok = b'{"type": "mylab.X", "data": {}}\n'
    append = ["--db", url, "append", "s"]
    return {
        "cli integer of 5000 digits": (
            append,
            b'{"type": "mylab.X", "data": {"n": ' + HUGE + b"}}\n",
        ),
        "cli --expect ²": ([*append, "--expect", "²"], ok),
        "cli --expect of 5000 digits": ([*append, "--expect", HUGE.decode()], ok),
        "cli --expect of 19 digits": ([*append, "--expect", "9" * 19], ok),
        "cli read-all --limit ²": (["--db", url, "read-all", "--limit", "²"], b""),
        "cli read --from-version of 5000 digits": (
            ["--db", url, "read", "s", "--from-version", HUGE.decode()],
            b"",
        ),
    }


def replay_from_processes(url: str, base: NewEvent) -> list[str]:
    """The accepted command's bytes, with fresh ids, from 8 processes at the same instant."""
    worker = r"""
import sys, time, uuid
from labledger import CommandRefused, NewEvent
from labledger.ledger import open_ledger
from labledger.security import KeyRing
url, data, start, secret = sys.argv[1], sys.argv[2].encode(), float(sys.argv[3]), sys.argv[4]
store = open_ledger(url, keyring=KeyRing({"k1": bytes.fromhex(secret)}), strict=False)
event = NewEvent(type="esper.AdaptationCommand", data=data)
time.sleep(max(0.0, start - time.time()))
try:
    store.append("cmds", [event])
    print("ACCEPTED")
except CommandRefused as exc:
    print("REJECTED", exc.reason)
"""
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker, url, base.data.decode(), str(start), SECRET.hex()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        for _ in range(REPLAYERS)
    ]
    return [(p.communicate(timeout=120)[0].strip() or "CRASH") for p in procs]


def test_hostile_inputs_are_refused(
    hostile_store: tuple[str, EventStore, NewEvent, NewEvent], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, store, base, existing = hostile_store
    before = log_fingerprint(store)
    rejections_before = store.stream_version(REJECTIONS_STREAM)
    tally = Tally()
    for name, (stream, events, expected) in hostile_api(base, existing).items():
        tally.record(name, lambda s=stream, e=events, x=expected: store.append(s, e, x))  # type: ignore[misc]
    monkeypatch.setenv("LABLEDGER_KEYS", f"k1:{SECRET.hex()}")
    numbers = bad_numbers_cli(url)
    for name, (args, stdin) in hostile_cli(url, base).items():
        tally.inputs += 1
        code, err = _cli(args, stdin, monkeypatch)
        tally.accepted += code == 0
        if code == 0:
            print(f"ACCEPTED: {name}")
        if "Traceback" in err or (name in numbers and code != 2):
            tally.crashes += 1
            print(f"CRASH on {name}: exit {code}, {err[-300:]}")
    verdicts = replay_from_processes(url, base)
    tally.inputs += len(verdicts)
    tally.accepted += verdicts.count("ACCEPTED")
    tally.crashes += verdicts.count("CRASH")
    after = log_fingerprint(store)
    rejections = store.stream_version(REJECTIONS_STREAM) - rejections_before
    figure(
        "6 hostile input",
        f"{tally.accepted} of {tally.inputs} hostile inputs accepted (API, CLI, {REPLAYERS} "
        f"concurrent replays); fingerprint (log minus {REJECTIONS_STREAM}) "
        f"{'unchanged' if after[0] == before[0] else 'CHANGED'}; {after[1] - before[1]} nonces "
        f"burned; {tally.crashes} crashes; {rejections} rejection records",
    )
    assert (tally.accepted, tally.crashes) == (0, 0)
    assert after == before
    assert verdicts == ["REJECTED replayed_nonce"] * REPLAYERS


class TrustingGate(LabGate):
    """The broken variant: a signature that does not verify is let through."""

    def prepare(
        self, event: NewEvent, *, typed: bool = False
    ) -> tuple[NewEvent, CommandClaim | None]:
        event, claim = super().prepare(event, typed=typed)
        if (
            claim is not None
            and claim.refusal is not None
            and claim.refusal[0] != "missing_signature"
        ):
            claim = msgspec.structs.replace(claim, refusal=None)
        return event, claim


def test_harness_catches_a_gate_that_skips_signatures(sqlite_backend: Backend) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    with open_store(url, gate=TrustingGate(RING, strict=False)) as store:
        base = _signed(now=_now())
        store.append("cmds", [base])
        tally = Tally()
        for name, (stream, events, expected) in hostile_api(base, base).items():
            tally.record(name, lambda s=stream, e=events, x=expected: store.append(s, e, x))  # type: ignore[misc]
    figure(
        "6 broken gate without signature check",
        f"harness found {tally.accepted} hostile inputs accepted",
    )
    assert tally.accepted > 0


# -- over HTTP (issue #18) -----------------------------------------------------------------


def _http_body(events: list[NewEvent]) -> bytes:
    """The events as a POST body, their data and metadata bytes embedded as they are
    (so malformed JSON reaches the server malformed)."""

    def one(e: NewEvent) -> bytes:
        parts = [b'"type":' + msgspec.json.encode(e.type), b'"data":' + (e.data or b"null")]
        parts.append(b'"id":' + msgspec.json.encode(e.id))
        if e.metadata not in (b"", b"{}"):
            parts.append(b'"metadata":' + e.metadata)
        for key in ("actor", "run_id"):
            if getattr(e, key) is not None:
                parts.append(msgspec.json.encode(key) + b":" + msgspec.json.encode(getattr(e, key)))
        if e.schema_version != 1:
            parts.append(b'"schema_version":' + msgspec.json.encode(e.schema_version))
        return b"{" + b",".join(parts) + b"}"

    return b"[" + b",".join(one(e) for e in events) + b"]"


def hostile_http(
    base: NewEvent, existing: NewEvent
) -> dict[str, tuple[str, str, bytes, dict[str, str]]]:
    """name -> (method, path and query, body, extra headers): the Python API's cases
    posted over HTTP, and what only HTTP has (Host, bodies past the limit, query numbers)."""
    from urllib.parse import quote

    cases: dict[str, tuple[str, str, bytes, dict[str, str]]] = {}
    for name, (stream, events, expected) in hostile_api(base, existing).items():
        expect = "any" if expected is ANY else str(expected).lower()
        path = f"/api/streams/{quote(stream, safe='')}/events?expect={quote(expect)}"
        cases[f"http {name}"] = ("POST", path, _http_body(events), {})
    ok = b'{"type": "mylab.X", "data": {}}'
    huge = HUGE.decode()
    cases |= {
        "http --expect of 5000 digits": ("POST", f"/api/streams/s/events?expect={huge}", ok, {}),
        "http body past the limit": (
            "POST",
            "/api/streams/s/events",
            b" " * (MAX_DOCUMENT_BYTES + 1) + ok,
            {},
        ),
        "http rebinding Host, read": ("GET", "/api/events", b"", {"Host": "evil.example"}),
        "http rebinding Host, write": (
            "POST",
            "/api/streams/s/events",
            ok,
            {"Host": "evil.example"},
        ),
        "http position of 5000 digits": ("GET", f"/api/events?from_position={huge}", b"", {}),
        "http position ²": ("GET", "/api/events?from_position=%C2%B2", b"", {}),
        "http event at ²": ("GET", "/api/events/%C2%B2", b"", {}),
        "http version of 5000 digits": (
            "GET",
            f"/api/streams/s/events?from_version={huge}",
            b"",
            {},
        ),
        "http tail from 5000 digits": ("GET", f"/api/tail?from_position={huge}", b"", {}),
    }
    return cases


def test_hostile_inputs_over_http_get_4xx_and_leave_the_log_unchanged(
    hostile_store: tuple[str, EventStore, NewEvent, NewEvent],
) -> None:
    from fastapi.testclient import TestClient

    from labledger.api import api_token, create_app

    _, store, base, existing = hostile_store
    before = log_fingerprint(store)
    token = {"Authorization": f"Bearer {api_token('k1', SECRET)}"}
    statuses: dict[str, int] = {}
    app = create_app(store=store, keyring=RING)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        for name, (method, path, body, headers) in hostile_http(base, existing).items():
            json_type = {"Content-Type": "application/json"} if body else {}
            response = client.request(
                method, path, content=body or None, headers=token | json_type | headers
            )
            statuses[name] = response.status_code
            if not 400 <= response.status_code < 500:
                print(f"NOT 4xx: {name} -> {response.status_code} {response.text[:200]}")
            else:
                assert response.json()["error"], name  # a JSON error body, always
    after = log_fingerprint(store)
    wrong = {n: s for n, s in statuses.items() if not 400 <= s < 500}
    figure(
        "6 hostile input over HTTP",
        f"{len(statuses) - len(wrong)} of {len(statuses)} hostile requests got a 4xx JSON error "
        f"(statuses {sorted(set(statuses.values()))}); fingerprint (log minus "
        f"{REJECTIONS_STREAM}) {'unchanged' if after[0] == before[0] else 'CHANGED'}",
    )
    assert wrong == {}
    assert after == before
    assert statuses["http rebinding Host, read"] == 421
    assert statuses["http body past the limit"] == 413
