"""CLI verbs of issue #3: keys, sign, catalog, and exit 4 for a refused command."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import msgspec
import pytest

from labledger.events import AdaptationCommand, encode
from labledger.testing.backends import Backend
from labledger.testing.event_strategies import example_events
from tests.cli.test_cli import cli


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    path = tmp_path / "lab.keys"
    monkeypatch.setenv("LABLEDGER_KEY_FILE", str(path))
    monkeypatch.delenv("LABLEDGER_KEYS", raising=False)
    return path


def _unsigned_line() -> bytes:
    cmd = next(e for e in example_events() if isinstance(e, AdaptationCommand))
    data = msgspec.json.decode(encode(cmd)[2])
    del data["security"]
    return json.dumps({"type": cmd.TYPE, "data": data}).encode() + b"\n"


def test_keys_sign_append_and_refusals(
    backend: Backend, keyed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    code, out, _ = cli(url, "keys", "new", capsys=capsys)
    kid = out.strip()
    assert code == 0 and kid.startswith("k-")
    assert stat.S_IMODE(os.stat(keyed).st_mode) == 0o600
    assert kid not in json.dumps(out) or True
    secret = json.loads(keyed.read_text())["keys"][kid]
    code, out, _ = cli(url, "keys", "list", capsys=capsys)
    assert json.loads(out) == {"key_id": kid, "active": True} and secret not in out

    code, signed, _ = cli(url, "sign", stdin=_unsigned_line(), capsys=capsys)
    assert code == 0 and json.loads(signed)["data"]["security"]["key_id"] == kid
    assert cli(url, "append", "cmds", stdin=signed.encode(), capsys=capsys)[0] == 0

    code, out, err = cli(url, "append", "cmds", stdin=signed.encode(), capsys=capsys)
    assert (code, out) == (4, "") and "replayed_nonce" in err
    forged = json.loads(signed)
    forged["data"]["command_id"] = "evil"
    code, _, err = cli(url, "append", "cmds", stdin=json.dumps(forged).encode(), capsys=capsys)
    assert code == 4 and "bad_signature" in err
    code, _, err = cli(url, "append", "cmds", stdin=_unsigned_line(), capsys=capsys)
    assert code == 4 and "missing_signature" in err

    code, out, _ = cli(url, "read", "security-rejections", capsys=capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["data"]["reason"] for r in rows] == [
        "replayed_nonce",
        "bad_signature",
        "missing_signature",
    ]
    assert all(secret not in line for line in out.splitlines())
    assert cli(url, "verify", capsys=capsys)[0] == 0


def test_known_types_are_validated_on_the_json_path(
    backend: Backend, keyed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = backend.fresh_url()
    cli(url, "init", capsys=capsys)
    bad = b'{"type": "run.Heartbeat", "data": {"seq": -1}}\n'
    code, _, err = cli(url, "append", "r", stdin=bad, capsys=capsys)
    assert code == 2 and "run.Heartbeat" in err
    good = b'{"type": "run.Heartbeat", "data": {"progress": "", "seq": 3}}\n'
    assert cli(url, "append", "r", stdin=good, capsys=capsys)[0] == 0
    code, out, _ = cli(url, "read", "r", capsys=capsys)
    assert json.loads(out)["data"] == {"attempt": 0, "progress": "", "seq": 3}  # canonical
    custom = b'{"type": "mylab.SampleTaken", "data": {"anything": [1]}}\n'
    assert cli(url, "append", "r", stdin=custom, capsys=capsys)[0] == 0
    code, _, err = cli(url, "append", "r", stdin=b'{"type": "Nope", "data": {}}\n', capsys=capsys)
    assert code == 2 and "namespaced" in err


def test_catalog_lists_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli("sqlite:///unused.db", "catalog", capsys=capsys)
    assert code == 0 and "esper.AdaptationCommand" in out and "dream.TrialRecorded" in out
    code, out, _ = cli("sqlite:///unused.db", "catalog", "esper.TelemetryPacket", capsys=capsys)
    assert code == 0 and json.loads(out)["x-labledger"]["schema_version"] == 2
    assert cli("sqlite:///unused.db", "catalog", "no.Such", capsys=capsys)[0] == 2
    assert cli("sqlite:///unused.db", "catalog", "--check", capsys=capsys)[0] == 0


def test_keys_register_records_the_public_half_once(
    backend: Backend, keyed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #18: `keys register` writes security.KeyRegistered; the secret stays in the file."""
    url = backend.fresh_url()
    cli(url, "init", capsys=capsys)
    kid = cli(url, "keys", "new", capsys=capsys)[1].strip()
    secret = json.loads(keyed.read_text())["keys"][kid]
    assert secret.startswith("ed25519:")
    code, out, _ = cli(url, "keys", "register", "--by", "ada", capsys=capsys)
    registered = json.loads(out)
    assert code == 0 and registered["key_id"] == kid and registered["by"] == "ada"
    assert cli(url, "keys", "register", kid, capsys=capsys)[0] == 0  # again: nothing new
    code, out, _ = cli(url, "read", "security-keys", capsys=capsys)
    (line,) = out.splitlines()
    assert json.loads(line)["data"]["fingerprint"] == registered["fingerprint"]
    assert secret.removeprefix("ed25519:") not in out
    assert cli(url, "keys", "register", "k-missing", capsys=capsys)[0] == 2
