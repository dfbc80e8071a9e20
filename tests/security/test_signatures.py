"""Ed25519 signatures recorded in the log, re-checked with no secret (issue #18)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from labledger.errors import CommandRefused, UsageError
from labledger.events import AdaptationCommand
from labledger.events.security import KeyRegistered
from labledger.lab.esper.session import session_ring
from labledger.ledger import open_ledger
from labledger.security import (
    KEYS_STREAM,
    KeyBook,
    KeyRing,
    new_key,
    recheck,
    register_key,
    sign,
)
from labledger.security.keyring import load
from labledger.store import EventStore, NewEvent, RecordedEvent, init_store, open_store
from labledger.testing.backends import Backend
from labledger.testing.event_strategies import example_events
from tests.cli.test_cli import cli

HMAC_SECRET = b"an-older-hmac-secret-0123456789ab"


def command(cid: str) -> AdaptationCommand:
    cmd = next(e for e in example_events() if isinstance(e, AdaptationCommand))
    return msgspec.structs.replace(cmd, command_id=cid)


@pytest.fixture
def url(backend: Backend) -> str:
    url = backend.fresh_url()
    init_store(url)
    return url


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No key file yet (its path is set, the file is absent) and no keys in the environment."""
    path = tmp_path / "lab.keys"
    monkeypatch.setenv("LABLEDGER_KEY_FILE", str(path))
    monkeypatch.delenv("LABLEDGER_KEYS", raising=False)
    monkeypatch.delenv("LABLEDGER_TRUSTED_KEYS", raising=False)
    return path


@pytest.fixture
def ledger(url: str, no_keys: Path) -> Iterator[EventStore]:
    with open_ledger(url, strict=False, keyring=KeyRing()) as store:
        yield store


def test_a_run_without_a_key_file_persists_and_registers_its_key(
    ledger: EventStore, no_keys: Path
) -> None:
    ring = session_ring(ledger, None)
    kid = ring.active
    assert kid is not None and ring.algorithm(kid) == "ed25519"
    assert stat.S_IMODE(os.stat(no_keys).st_mode) == 0o600
    assert load(no_keys).public_key(kid) == ring.public_key(kid)  # persisted: usable later
    (record,) = ledger.read_stream(KEYS_STREAM)
    assert record.type == KeyRegistered.TYPE and record.actor == "labledger.gate"
    registered = msgspec.json.decode(record.data)
    assert registered["public_key"] == (ring.public_key(kid) or b"").hex()
    assert (
        "secret" not in record.data.decode() and ring.encoded(kid)[8:] not in record.data.decode()
    )
    # A second run finds the key and registers nothing more.
    session_ring(ledger, ring)
    assert len(ledger.read_stream(KEYS_STREAM)) == 1


def test_signed_command_is_admitted_and_marked_ed25519(ledger: EventStore) -> None:
    ring = session_ring(ledger, None)
    signed = sign(command("c-1"), ring)
    assert signed.security.signature.startswith("ed25519:")
    ledger.append("cmds", [signed])
    book = KeyBook()
    book.refresh(ledger)
    report = recheck.report(ledger.read_all(), book)
    assert (report.commands, report.counts, report.ok) == (1, {"ok": 1}, True)


def test_gate_registers_its_own_ring_key_on_first_use(url: str, no_keys: Path) -> None:
    ring = KeyRing()
    kid = new_key(ring)
    with open_ledger(url, strict=False, keyring=ring) as store:
        store.append("cmds", [sign(command("c-1"), ring)])
        assert [r.type for r in store.read_stream(KEYS_STREAM)] == [KeyRegistered.TYPE]
        assert json.loads(store.read_stream(KEYS_STREAM)[0].data)["key_id"] == kid


def test_an_untrusted_key_is_refused_even_when_registered(url: str, no_keys: Path) -> None:
    ring = KeyRing(trusted=["someone-else"])
    kid = new_key(ring)
    with open_ledger(url, strict=False, keyring=ring) as store:
        register_key(store, ring, kid, "tester")  # the gate does not register untrusted keys
        with pytest.raises(CommandRefused, match=r"unknown_key.*trust list"):
            store.append("cmds", [sign(command("c-1"), ring)])
        assert store.read_stream("cmds") == []


def test_a_key_id_is_never_rebound(ledger: EventStore) -> None:
    ring = session_ring(ledger, None)
    kid = ring.active
    assert kid is not None
    impostor = KeyRing()
    impostor.add_ed25519(kid, b"\x07" * 32)
    with pytest.raises(UsageError, match="another public key"):
        register_key(ledger, impostor, kid, "mallory")
    # Nor can a command signed with the impostor's key pass as the registered one.
    with pytest.raises(CommandRefused, match="bad_signature"):
        ledger.append("cmds", [sign(command("c-2"), impostor)])


def _forged_log(url: str, no_keys: Path) -> tuple[str, str, str]:
    """A log with a good command, a forged one and one signed by an unregistered key.

    The last two were written past the gate (a raw store), as an attacker with
    database access, or a buggy writer, would.
    """
    ring = KeyRing()
    new_key(ring)
    with open_ledger(url, strict=False, keyring=ring) as store:
        store.append("cmds", [sign(command("good"), ring)])
    good = sign(command("forged"), ring)
    forged = msgspec.structs.replace(good, target_slot="r9c9")  # content changed after signing
    stranger = KeyRing()
    new_key(stranger)
    with open_store(url) as raw:
        raw.append("cmds", [forged, sign(command("stranger"), stranger)])
    return "good", "forged", "stranger"


def test_audit_verify_detects_a_forged_signature_and_an_unregistered_key(
    url: str, no_keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, forged, stranger = _forged_log(url, no_keys)
    assert not no_keys.exists()  # the auditor holds no secret
    code, out, _ = cli(url, "audit", "--verify", good, capsys=capsys)
    assert code == 0 and json.loads(out)["status"] == "ok"
    assert json.loads(out)["fingerprint"].startswith("sha256:")
    code, out, _ = cli(url, "audit", "--verify", forged, capsys=capsys)
    assert code == 1 and json.loads(out)["status"] == "bad_signature"
    code, out, _ = cli(url, "audit", "--verify", stranger, "--text", capsys=capsys)
    assert code == 1 and "unknown_key" in out
    code, out, err = cli(url, "verify", "--signatures", capsys=capsys)
    signatures = json.loads(out)["signatures"]
    assert code == 1 and signatures["counts"] == {"ok": 1, "bad_signature": 1, "unknown_key": 1}
    assert "bad_signature" in err and "unknown_key" in err
    assert cli(url, "audit", "--verify", "no-such", capsys=capsys)[0] == 2


def test_signatures_verify_on_a_read_only_copy_with_no_key_ring(
    sqlite_backend: Backend,
    no_keys: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    ring = KeyRing()
    new_key(ring)
    with open_ledger(url, strict=False, keyring=ring) as store:
        for i in range(3):
            store.append("cmds", [sign(command(f"c-{i}"), ring)])
        copy = tmp_path / "audit" / "copy.db"
        copy.parent.mkdir()
        store.copy_into(copy)
    copy.chmod(0o444)
    copy.parent.chmod(0o555)  # nothing can be written beside it either
    try:
        copy_url = f"sqlite:///{copy}"
        code, out, err = cli(copy_url, "--read-only", "verify", "--signatures", capsys=capsys)
        assert code == 0 and "failure" not in err and "conflict" not in err
        signatures = json.loads(out)["signatures"]
        assert signatures["counts"] == {"ok": 3} and signatures["keys_registered"] == 1
        code, out, _ = cli(copy_url, "--read-only", "audit", "--verify", "c-1", capsys=capsys)
        assert code == 0 and json.loads(out)["status"] == "ok"
    finally:
        copy.parent.chmod(0o755)


def test_hmac_commands_of_older_logs_stay_verifiable_where_the_key_is(
    url: str, no_keys: Path
) -> None:
    ring = KeyRing({"old": HMAC_SECRET})
    with open_ledger(url, strict=False, keyring=ring) as store:
        store.append("cmds", [sign(command("old-1"), ring)])
        book = KeyBook()
        book.refresh(store)
        (with_key,) = recheck.check_log(store.read_all(), book, ring)
        (without,) = recheck.check_log(store.read_all(), book, None)
    assert (with_key.status, with_key.algorithm) == ("hmac_ok", "hmac-sha256")
    assert (without.status, without.failed) == ("unverifiable", False)


def test_the_trust_list_comes_from_the_environment() -> None:
    ring = KeyRing.from_env({"LABLEDGER_KEY_FILE": "/nonexistent", "LABLEDGER_TRUSTED_KEYS": "a,b"})
    assert ring.trusts("a") and not ring.trusts("c")
    seed = "11" * 32
    ring = KeyRing.from_env(
        {"LABLEDGER_KEY_FILE": "/nonexistent", "LABLEDGER_KEYS": f"k:ed25519:{seed}"}
    )
    assert ring.algorithm("k") == "ed25519" and ring.trusts("k")


def test_import_refuses_a_used_nonce_under_a_new_event_id(
    url: str, no_keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = KeyRing()
    new_key(ring)
    with open_ledger(url, strict=False, keyring=ring) as store:
        store.append("cmds", [sign(command("once"), ring)])
        (used,) = store.read_stream("cmds")
        keys = store.read_stream(KEYS_STREAM)
    # The same signed bytes under a fresh id, in a rebuilt but otherwise valid archive.
    scratch = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    init_store(scratch)
    with open_store(scratch) as raw:
        raw.append(KEYS_STREAM, [_as_new(r) for r in keys])
        raw.append("cmds", [msgspec.structs.replace(_as_new(used), id=str(uuid.uuid4()))])
    archive = tmp_path / "rebuilt.lla"
    assert cli(scratch, "export", "--out", str(archive), capsys=capsys)[0] == 0
    before = _fingerprint(url)
    code, _, err = cli(url, "import", str(archive), capsys=capsys)
    assert code == 4 and "replayed_nonce" in err and "wrote nothing" in err
    assert _fingerprint(url) == before


def _as_new(record: RecordedEvent) -> NewEvent:
    """A recorded event as an event to append again (its id, bytes and envelope)."""
    fields = msgspec.structs.asdict(record)
    return NewEvent(**{k: v for k, v in fields.items() if k in NewEvent.__struct_fields__})


def _fingerprint(url: str) -> tuple[int, str]:
    with open_store(url, read_only=True) as store:
        report = store.verify()
        return store.head(), report.head_hash


def test_signing_keeps_working_with_a_copied_ring(no_keys: Path) -> None:
    ring = KeyRing()
    kid = new_key(ring)
    copy = KeyRing()
    copy.add_encoded(kid, ring.encoded(kid))
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    a = sign(command("c"), ring, now=when, nonce="n")
    b = sign(command("c"), copy, now=when, nonce="n")
    assert a.security.signature == b.security.signature  # Ed25519 is deterministic
