"""The head anchor catches what verify alone cannot (issue #8)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from labledger import NewEvent, init_store, open_store
from labledger.store import Problem
from labledger.store.integrity import GENESIS, AnchorMismatch, chain_link, record_checksum
from labledger.testing.backends import SqliteBackend


def _fill(url: str, start: int, n: int) -> None:
    with open_store(url) as store:
        for i in range(start, start + n):
            store.append(f"s{i % 2}", [NewEvent.from_json("t.T", {"i": i})])


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/lab.db"
    init_store(url)
    return url


def _db_files(tmp_path: Path) -> list[Path]:
    return [
        p
        for p in tmp_path.iterdir()
        if p.name.startswith("lab.db") and not p.name.startswith("lab.db.anchor")
    ]


def test_a_regressed_log_is_reported_and_appends_refused(url: str, tmp_path: Path) -> None:
    _fill(url, 0, 5)
    saved = tmp_path / "saved"
    saved.mkdir()
    for f in _db_files(tmp_path):
        shutil.copy(f, saved / f.name)
    _fill(url, 5, 5)  # the anchor moves to 10
    for f in _db_files(tmp_path):
        f.unlink()
    for f in saved.iterdir():
        shutil.copy(f, tmp_path / f.name)  # an older copy comes back, the anchor stays
    with open_store(url) as store:
        assert store.head() == 5
        report = store.verify()
        assert not report.ok and report.problem is Problem.ANCHOR
        assert "log regressed from 10 to 5; 5 events missing" in report.message
        with pytest.raises(AnchorMismatch, match="regressed"):
            store.append("s", [NewEvent.from_json("t.T", {})])
        assert store.head() == 5
        assert store.accept_anchor() == 5  # the operator decides
        store.append("s", [NewEvent.from_json("t.T", {})])
        assert store.verify().ok


def test_rewritten_history_with_a_recomputed_chain_is_caught(url: str, tmp_path: Path) -> None:
    _fill(url, 0, 8)
    backend = SqliteBackend(tmp_path)
    with backend.tamper(url) as conn:
        rows = conn.execute(
            sa.text(
                "SELECT position, stream_version, schema_version, recorded_at, event_id, stream, "
                "type, correlation_id, causation_id, run_id, actor, data, metadata "
                "FROM ll_events ORDER BY position"
            )
        ).all()
        link = GENESIS
        for row in rows:
            data = b'{"i":999}' if row[0] == 3 else row[11]
            checksum = record_checksum(*row[:11], data, row[12])
            link = chain_link(link, checksum)
            conn.execute(
                sa.text(
                    "UPDATE ll_events SET data = :d, checksum = :c, chain = :l WHERE position = :p"
                ),
                {"d": data, "c": checksum, "l": link, "p": row[0]},
            )
    with open_store(url) as store:
        report = store.verify()
        assert not report.ok and report.problem is Problem.ANCHOR
        assert "rewritten" in report.message
        with pytest.raises(AnchorMismatch):
            store.append("s", [NewEvent.from_json("t.T", {})])


def test_a_forged_anchor_fails_its_mac(url: str, tmp_path: Path) -> None:
    _fill(url, 0, 3)
    anchor = tmp_path / "lab.db.anchor"
    raw = bytearray(anchor.read_bytes())
    for offset in (0, 128):  # claim an older head in both slots, without the key
        raw[offset + 4 : offset + 12] = (1).to_bytes(8, "big")
    anchor.write_bytes(bytes(raw))
    with open_store(url) as store:
        report = store.verify()
        assert not report.ok and "MAC" in report.message


def test_the_anchor_follows_commits(url: str, tmp_path: Path) -> None:
    _fill(url, 0, 4)
    with open_store(url) as store:
        state = store.anchor_status()
        assert state is not None and state.position == store.head() == 4
        assert store.verify().ok
    assert (tmp_path / "lab.db.anchor.key").stat().st_mode & 0o777 == 0o600
