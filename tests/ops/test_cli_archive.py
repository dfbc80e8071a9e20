"""backup, restore, export and import through the CLI, with their exit codes (issue #8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labledger.cli.main import run
from labledger.testing.backends import Backend, SqliteBackend
from tests.ops.helpers import fill, new_store


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_backup_and_restore_verbs(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = new_store(backend)
    fill(store, 12)
    code, out, _ = cli(capsys, "--db", store.url, "backup", str(tmp_path / "b"))
    assert code == 0 and json.loads(out)["head"] == 12
    target = backend.fresh_url()
    code, out, _ = cli(capsys, "--db", target, "restore", str(tmp_path / "b"))
    assert code == 0 and json.loads(out)["head"] == 12
    code, _, err = cli(capsys, "--db", target, "restore", str(tmp_path / "b"))
    assert code == 2 and "--force" in err
    assert cli(capsys, "--db", target, "restore", "--force", str(tmp_path / "b"))[0] == 0
    code, _, err = cli(capsys, "--db", target, "restore", str(tmp_path / "nothing"))
    assert code == 2 and "manifest" in err
    store.close()


def test_export_and_import_verbs(
    pair: tuple[Backend, Backend], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target = new_store(pair[0]), new_store(pair[1])
    fill(source, 30)
    out_file = str(tmp_path / "run.lla")
    code, out, err = cli(capsys, "--db", source.url, "export", "--run", "run-0", "--out", out_file)
    assert code == 0 and "export" in err
    exported = json.loads(out)["events"]
    code, out, _ = cli(capsys, "--db", target.url, "import", out_file)
    assert code == 0 and json.loads(out)["imported"] == exported == target.head()
    code, out, _ = cli(capsys, "--db", target.url, "import", out_file)
    assert code == 0 and json.loads(out)["imported"] == 0

    raw = bytearray(Path(out_file).read_bytes())
    raw[-200] ^= 4  # inside the last record (the trailer is 80 bytes)
    Path(out_file).write_bytes(bytes(raw))
    code, _, err = cli(capsys, "--db", target.url, "import", out_file)
    assert code == 1 and f"record {exported - 1} at byte offset" in err
    source.close()
    target.close()


def test_usage_and_unavailable_exit_codes(
    sqlite_backend: SqliteBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = new_store(sqlite_backend)
    out = str(tmp_path / "x.lla")
    assert (
        cli(capsys, "--db", store.url, "export", "--run", "r", "--from", "1", "--out", out)[0] == 2
    )
    assert cli(capsys, "--db", store.url, "export", "--from", "0", "--out", out)[0] == 2
    assert cli(capsys, "--db", store.url, "import", str(tmp_path / "missing.lla"))[0] == 2
    down = "postgresql://postgres@127.0.0.1:1/none"
    assert cli(capsys, "--db", store.url, "export", "--out", out)[0] == 0
    assert cli(capsys, "--db", down, "import", out)[0] == 5
    assert cli(capsys, "--db", down, "export", "--out", out)[0] == 5
    assert cli(capsys, "--db", down, "backup", str(tmp_path / "b"))[0] == 5
    uninitialised = sqlite_backend.fresh_url()
    assert cli(capsys, "--db", uninitialised, "backup", str(tmp_path / "b"))[0] == 5
    store.close()
