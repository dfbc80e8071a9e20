"""A lab log written without a key file moves to PostgreSQL, and is re-checkable there (#18).

Before #18 such a log was signed with an in-memory ``esper-session-…`` key and
``import`` refused it with ``unknown_key``. Now the run saves its key, registers
the public half in the log, and the archive carries that registration.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labledger.events.security import KeyRegistered
from labledger.security import KEYS_STREAM
from labledger.store import init_store, open_store
from labledger.testing.backends import PostgresBackend, SqliteBackend
from tests.cli.test_cli import cli

pytest.importorskip("torch")


def test_a_lab_log_without_a_key_file_imports_into_postgresql(
    sqlite_backend: SqliteBackend,
    postgres_backend: PostgresBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    key_file = tmp_path / "lab.keys"
    monkeypatch.setenv("LABLEDGER_KEY_FILE", str(key_file))
    monkeypatch.delenv("LABLEDGER_KEYS", raising=False)
    source = sqlite_backend.fresh_url()
    init_store(source)
    code, out, _ = cli(source, "esper", "train", "--epochs", "4", "--seed", "0", capsys=capsys)
    assert code == 0, out
    assert key_file.exists()  # the run made its key and kept it
    with open_store(source, read_only=True) as store:
        (registration,) = store.read_stream(KEYS_STREAM)
        assert registration.type == KeyRegistered.TYPE
        commands = [r for r in store.read_all() if r.type == "esper.AdaptationCommand"]
    assert commands, "the seeded run issues adaptation commands"

    archive = tmp_path / "lab.lla"
    assert cli(source, "export", "--out", str(archive), capsys=capsys)[0] == 0
    key_file.unlink()  # the target lab holds no key at all
    target = postgres_backend.fresh_url()
    init_store(target)
    code, out, err = cli(target, "import", str(archive), capsys=capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["imported"] == report["events"] > len(commands)

    code, out, err = cli(target, "verify", "--signatures", capsys=capsys)
    signatures = json.loads(out)["signatures"]
    assert code == 0 and "failure" not in err and "conflict" not in err
    assert signatures["counts"] == {"ok": len(commands)}
    command_id = json.loads(commands[0].data)["command_id"]
    code, out, _ = cli(target, "audit", "--verify", command_id, capsys=capsys)
    assert code == 0 and json.loads(out)["status"] == "ok"

    # Importing the same archive again writes nothing (ids), and is not a nonce replay.
    code, out, _ = cli(target, "import", str(archive), capsys=capsys)
    assert code == 0 and json.loads(out)["imported"] == 0
