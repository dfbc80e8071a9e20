"""The CLI contract of issue #2: each verb and each exit code, on both backends."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from labledger.cli.main import run
from labledger.testing.backends import Backend, PostgresBackend

Lines = list[dict[str, object]]


def cli(
    url: str, *argv: str, stdin: bytes = b"", capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    sys_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        code = run(["--db", url, *argv])
    finally:
        sys.stdin = sys_stdin
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


@pytest.fixture
def url(backend: Backend, capsys: pytest.CaptureFixture[str]) -> str:
    url = backend.fresh_url()
    assert cli(url, "init", capsys=capsys)[0] == 0
    return url


def test_init_append_read_head_verify(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    eid = str(uuid.uuid4())
    code, out, _ = cli(
        url,
        "append",
        "notes",
        "--expect",
        "no-stream",
        capsys=capsys,
        stdin=jsonl(
            {
                "type": "lab.Note",
                "data": {"t": "a"},
                "id": eid,
                "metadata": {"who": "x"},
                "run_id": "r1",
            },
            {"type": "lab.Note", "data": {"t": "b"}},
        ),
    )
    assert code == 0
    assert json.loads(out) == {
        "stream": "notes",
        "first_position": 1,
        "last_position": 2,
        "last_version": 1,
        "already_appended": False,
    }
    code, out, _ = cli(url, "read", "notes", capsys=capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["data"] for r in rows] == [{"t": "a"}, {"t": "b"}]
    first = rows[0]
    assert {
        "position",
        "stream",
        "version",
        "type",
        "schema_version",
        "id",
        "recorded_at",
        "data",
        "metadata",
    } <= set(first)
    assert (first["id"], first["metadata"], first["run_id"]) == (eid, {"who": "x"}, "r1")
    assert first["recorded_at"].endswith("Z")
    code, out, _ = cli(url, "read", "notes", "--from-version", "1", "--limit", "5", capsys=capsys)
    assert [json.loads(line)["version"] for line in out.splitlines()] == [1]
    code, out, _ = cli(url, "read-all", "--from-position", "2", capsys=capsys)
    assert [json.loads(line)["position"] for line in out.splitlines()] == [2]
    assert cli(url, "head", capsys=capsys)[1].strip() == "2"
    code, out, _ = cli(url, "verify", capsys=capsys)
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = cli(url, "streams", "--prefix", "no", capsys=capsys)
    assert json.loads(out)["stream"] == "notes"


def test_conflict_exits_3_and_writes_nothing(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    line = jsonl({"type": "lab.Note", "data": {}})
    assert cli(url, "append", "s", stdin=line, capsys=capsys)[0] == 0
    code, out, err = cli(url, "append", "s", "--expect", "no-stream", stdin=line, capsys=capsys)
    assert (code, out) == (3, "") and "version 0" in err
    assert cli(url, "append", "s", "--expect", "5", stdin=line, capsys=capsys)[0] == 3
    assert cli(url, "append", "s", "--expect", "0", stdin=line, capsys=capsys)[0] == 0
    assert cli(url, "head", capsys=capsys)[1].strip() == "2"


@pytest.mark.parametrize(
    "stdin",
    [
        b"",
        b"not json\n",
        b'{"type": "x.Y"}\n',
        b'{"type": "x.Y", "data": []}\n',
        b'{"type": 3, "data": {}}\n',
        b'{"type": "x.Y", "data": {"a": 1, "a": 2}}\n',
        b'{"type": "x.Y", "data": {"a": NaN}}\n',
        b'{"type": "x.Y", "data": {"a": 18446744073709551616}}\n',
        b'{"type": "x.Y", "data": {"a": "\xff\xfe"}}\n',
        b'{"type": "x.Y", "data": ' + b'{"a":' * 200 + b"1" + b"}" * 201 + b"\n",
        b'{"type": "x.Y", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}\n",
        b'{"type": "x.Y", "data": {}, "id": "nope"}\n',
        b'{"type": "x.Y", "data": {}, "surprise": 1}\n',
        b'{"type": "", "data": {}}\n',
        b'{"type": "x.Y", "data": {}}\n{"type": "x.Y", "data": {},\n',
        b'{"type": "x.Y", "data": {"big": "' + b"x" * (1 << 20) + b'"}}\n',
    ],
    ids=[
        "empty",
        "garbage",
        "no-data",
        "data-list",
        "type-int",
        "dup-key",
        "nan",
        "int65",
        "utf8",
        "deep",
        "deeper",
        "bad-id",
        "extra-field",
        "empty-type",
        "second-bad",
        "oversize",
    ],
)
def test_bad_input_exits_2_and_leaves_the_log(
    url: str, capsys: pytest.CaptureFixture[str], stdin: bytes
) -> None:
    assert cli(url, "append", "s", stdin=jsonl({"type": "x.Y", "data": {}}), capsys=capsys)[0] == 0
    before = cli(url, "verify", capsys=capsys)[1]
    code, out, err = cli(url, "append", "s", stdin=stdin, capsys=capsys)
    assert code == 2 and out == "" and err.startswith("labledger:")
    assert "Traceback" not in err
    assert cli(url, "verify", capsys=capsys)[1] == before


def test_usage_errors_exit_2(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(url, "frobnicate", capsys=capsys)[0] == 2
    assert cli(url, "append", "s", "--expect", "-1", capsys=capsys)[0] == 2
    assert cli(url, "read", "s", "--limit", "many", capsys=capsys)[0] == 2


def test_integrity_failure_exits_1(
    url: str, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy as sa

    cli(
        url,
        "append",
        "s",
        stdin=jsonl(*({"type": "x.Y", "data": {"i": i}} for i in range(3))),
        capsys=capsys,
    )
    with backend.tamper(url) as conn:
        conn.execute(
            sa.text("UPDATE ll_events SET data = :d WHERE position = 2"), {"d": b'{"i":7}'}
        )
    code, out, err = cli(url, "verify", capsys=capsys)
    assert code == 1 and json.loads(out)["first_bad_position"] == 2 and "position 2" in err


def test_uninitialised_store_exits_5(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(backend.fresh_url(), "head", capsys=capsys)
    assert code == 5 and "init" in err


def test_unreachable_server_exits_5(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli("postgresql://postgres@127.0.0.1:1/nowhere", "head", capsys=capsys)
    assert code == 5 and "PostgreSQL" in err


def test_entry_point_and_default_db(tmp_path: os.PathLike[str]) -> None:
    """The installed console script honours LABLEDGER_DB and exit codes."""
    env = {**os.environ, "LABLEDGER_DB": f"sqlite:///{tmp_path}/env.db"}
    cmd = [sys.executable, "-m", "labledger"]
    assert subprocess.run([*cmd, "init"], env=env, capture_output=True).returncode == 0
    done = subprocess.run(
        [*cmd, "append", "s"], env=env, capture_output=True, input=b'{"type": "x.Y", "data": {}}\n'
    )
    assert done.returncode == 0, done.stderr
    head = subprocess.run([*cmd, "head"], env=env, capture_output=True, text=True)
    assert head.stdout.strip() == "1"
    assert (tmp_path / "env.db").exists()  # type: ignore[operator]


def test_init_creates_a_missing_postgres_database(
    postgres_backend: PostgresBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue #12: only the database was missing, and the message asked if the server ran."""
    name = f"ll_missing_{uuid.uuid4().hex[:10]}"
    url = sa.engine.make_url(postgres_backend.server_url).set(database=name)
    url_text = url.render_as_string(hide_password=False)
    code, _, err = cli(url_text, "head", capsys=capsys)
    assert code == 5 and f"database '{name}' does not exist" in err and "init" in err
    assert "is the server running" not in err
    try:
        code, _, err = cli(url_text, "init", capsys=capsys)
        assert code == 0 and f"created database '{name}'" in err
        code, _, err = cli(url_text, "init", capsys=capsys)  # idempotent, says nothing new
        assert code == 0 and "created" not in err
        assert cli(url_text, "head", capsys=capsys)[:2] == (0, "0\n")
    finally:
        admin = sa.create_engine(postgres_backend.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == "labledger 0.1.0"
