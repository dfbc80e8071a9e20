"""Portable archives between backends: round trip, selection, blobs, atomic writes (issue #8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labledger.errors import UsageError
from labledger.store import NewEvent, init_store, open_store
from labledger.store.archive import MAGIC, export_archive, import_archive, read_archive
from labledger.testing.backends import Backend, SqliteBackend
from tests.ops.helpers import envelope, fill, new_store


def test_export_import_across_backends_keeps_every_event(
    pair: tuple[Backend, Backend], tmp_path: Path
) -> None:
    source, target = new_store(pair[0]), new_store(pair[1])
    fill(source, 120)
    report = export_archive(source, tmp_path / "all.lla")
    assert report.events == 120 and (tmp_path / "all.lla").read_bytes()[:8] == MAGIC
    fill(target, 4)  # the target need not be empty: events land after its own
    result = import_archive(target, tmp_path / "all.lla")
    assert (result.imported, result.skipped, result.first_position) == (120, 0, 5)
    assert [envelope(e) for e in target.read_all(5)] == [envelope(e) for e in source.read_all()]
    assert target.verify().ok

    head, hash_ = target.head(), target.verify().head_hash
    again = import_archive(target, tmp_path / "all.lla")
    assert (again.imported, again.skipped, again.first_position) == (0, 120, None)
    assert (target.head(), target.verify().head_hash) == (head, hash_)
    source.close()
    target.close()


def test_export_by_run_and_by_range_select_exactly(backend: Backend, tmp_path: Path) -> None:
    store = new_store(backend)
    fill(store, 60, runs=3)
    everything = list(store.read_all())
    export_archive(store, tmp_path / "run1.lla", run_id="run-1")
    got = [e.id for e in read_archive(tmp_path / "run1.lla").events]
    assert got == [e.id for e in everything if e.run_id == "run-1"] and got
    archive = export_archive(store, tmp_path / "range.lla", from_position=7, to_position=19)
    got = [e.position for e in read_archive(tmp_path / "range.lla").events]
    assert got == list(range(7, 20)) and archive.events == 13
    header = read_archive(tmp_path / "range.lla").header
    assert header["selection"] == {"run": None, "from": 7, "to": 19}
    with pytest.raises(UsageError):
        export_archive(store, tmp_path / "x.lla", run_id="r", from_position=1)
    with pytest.raises(UsageError):
        export_archive(store, tmp_path / "x.lla", from_position=9, to_position=3)
    assert not (tmp_path / "x.lla").exists()
    store.close()


def test_referenced_blobs_travel_with_the_run(
    pair: tuple[Backend, Backend], tmp_path: Path
) -> None:
    source, target = new_store(pair[0]), new_store(pair[1])
    digest = source.put_blob(b"kernel bytes \x00\x01")
    source.append("k", [NewEvent.from_json("lab.KernelStored", {"sha256": digest}, run_id="r")])
    report = export_archive(source, tmp_path / "k.lla", run_id="r")
    assert (report.events, report.blobs) == (1, 1)
    import_archive(target, tmp_path / "k.lla")
    assert target.get_blob(digest) == b"kernel bytes \x00\x01"
    source.close()
    target.close()


_EXPORTER = """
import sys, time
from pathlib import Path
from labledger.store import open_store
from labledger.store.archive import export_archive
with open_store(sys.argv[1]) as store:
    export_archive(store, Path(sys.argv[2]), progress=lambda done, total: time.sleep(0.05))
"""


def test_a_killed_exporter_never_leaves_a_partial_file(
    sqlite_backend: SqliteBackend, tmp_path: Path
) -> None:
    url = sqlite_backend.fresh_url()
    init_store(url)
    with open_store(url) as store:
        for i in range(0, 20_000, 500):
            store.append("bulk", [NewEvent.from_json("lab.N", {"i": i + j}) for j in range(500)])
    dest = tmp_path / "out.lla"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _EXPORTER, url, str(dest)], env=env)
    deadline = time.monotonic() + 20
    while not any(p.name.endswith(".tmp") and p.stat().st_size for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline and proc.poll() is None, "exporter never started"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not dest.exists()  # only the temporary file was ever written

    with open_store(url) as store:
        export_archive(store, dest)
    assert len(read_archive(dest).events) == 20_000
