"""Online backup while writers run, and restore with verification (issue #8)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from labledger.errors import CorruptionDetected, UsageError
from labledger.store import NewEvent, init_store, open_store
from labledger.store.backup import backup, manifest_path, restore
from labledger.testing.backends import Backend, SqliteBackend
from tests.ops.helpers import fill, new_store


def test_backup_while_writers_append_restores_a_verified_prefix(
    backend: Backend, tmp_path: Path
) -> None:
    source = new_store(backend)
    fill(source, 200)
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            i = 0
            while not stop.is_set():
                source.append(f"w{w}", [NewEvent.from_json("lab.Tick", {"i": i})])
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        manifest = backup(source, tmp_path / "lab.bak")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert json.loads(manifest_path(tmp_path / "lab.bak").read_text()) == manifest
    assert manifest["head"] >= 200 and manifest["counts"]["events"] == manifest["head"]
    assert source.head() > manifest["head"] or source.head() == manifest["head"]

    target_url = backend.fresh_url()
    result = restore(tmp_path / "lab.bak", target_url)
    assert (result["head"], result["head_hash"]) == (manifest["head"], manifest["head_hash"])
    with open_store(target_url) as restored:
        report = restored.verify()
        assert report.ok, report.message
        assert (report.head, report.head_hash) == (manifest["head"], manifest["head_hash"])
        expected = [e.id for e in source.read_all(limit=manifest["head"])]
        assert [e.id for e in restored.read_all()] == expected
    source.close()


def test_restore_refuses_a_non_empty_target_unless_forced(backend: Backend, tmp_path: Path) -> None:
    source = new_store(backend)
    fill(source, 20)
    manifest = backup(source, tmp_path / "b")
    target = new_store(backend)
    fill(target, 3)
    with pytest.raises(UsageError, match="already holds 3 events"):
        restore(tmp_path / "b", target.url)
    assert target.head() == 3
    target.close()
    result = restore(tmp_path / "b", target.url, force=True)
    assert result["head"] == manifest["head"] == 20
    with open_store(target.url) as restored:  # re-anchored: appends work again
        assert restored.verify().ok
        restored.append("after", [NewEvent.from_json("lab.Note", {})])
    source.close()


def test_restore_detects_a_damaged_backup(sqlite_backend: SqliteBackend, tmp_path: Path) -> None:
    source = new_store(sqlite_backend)
    fill(source, 10)
    backup(source, tmp_path / "b.db")
    raw = bytearray((tmp_path / "b.db").read_bytes())
    raw[len(raw) // 2] ^= 0x10
    (tmp_path / "b.db").write_bytes(bytes(raw))
    target = sqlite_backend.fresh_url()
    with pytest.raises(CorruptionDetected, match="SHA-256"):
        restore(tmp_path / "b.db", target)
    assert not Path(target.removeprefix("sqlite:///")).exists()


def test_restore_refuses_another_backend_kind(
    sqlite_backend: SqliteBackend, tmp_path: Path
) -> None:
    source = new_store(sqlite_backend)
    backup(source, tmp_path / "b.db")
    with pytest.raises(UsageError, match="export"):
        restore(tmp_path / "b.db", "postgresql://nobody@127.0.0.1:1/none")
    url = sqlite_backend.fresh_url()
    init_store(url)
    with pytest.raises(UsageError, match="manifest"):
        restore(tmp_path / "missing.db", url)
