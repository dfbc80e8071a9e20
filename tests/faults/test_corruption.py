"""Harness 2 — bit flips, torn tails and truncations of the database, its WAL and archives.

A golden SQLite store is built once: 40 events checkpointed into the database
file, 20 more left in the WAL (its writer exits without closing, like a killed
process), a blob, metadata on every event, the head anchor beside it. Each
mutation (one flipped bit at a seeded random offset, or a truncation) is applied
to a fresh copy, which a worker process opens and verifies: the change must be
detected (a typed error, or verify failing, naming the first bad position where
there is one) or have hit unused space — proved by the logical content being
byte-identical to the golden's. An untyped exception is a crash; a worker that
stops answering is a hang. Archives are checked in process: every mutation
must raise ``ArchiveCorrupt`` naming the very record that was damaged.

Broken variant caught here: record checksums that leave the metadata out.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from labledger import open_store
from labledger.store.archive import ArchiveCorrupt, export_archive, read_archive
from labledger.testing.faults import GOLDEN_NAME, FaultWorker
from labledger.testing.workers import worker_env
from tests.faults.harness import fault_seed, figure, scaled

DB_FLIPS = scaled(40, 1000)
WAL_FLIPS = scaled(20, 300)
TRUNCATIONS = scaled(6, 60)
ARCHIVE_FLIPS = scaled(200, 3000)
MARKER = "MMMMMMMMMMMMMMMM"
BUILD_GOLDEN = r"""
import os, sqlite3, sys
from labledger import NewEvent, init_store, open_store
if sys.argv[2] == "skip-metadata":
    from labledger.testing.faults import skip_metadata_checksum
    skip_metadata_checksum()
path = sys.argv[1]
url = f"sqlite:///{path}"
init_store(url)
store = open_store(url)
blob = store.put_blob(b"kernel bytes " * 100)
def batch(n):
    for i in range(n):
        meta = {"note": "%s" % sys.argv[3], "i": i}
        data = {"i": i, "blob": blob if i == 3 else None, "text": "x" * (i * 7)}
        store.append(f"s{i % 5}", [NewEvent.from_json("test.Golden", data, metadata=meta,
                                                      run_id=f"run-{i % 3}")])
batch(40)
raw = sqlite3.connect(path)
raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
raw.close()
batch(20)
os._exit(0)   # like a killed process: the last commits stay in the WAL
"""


def build_golden(directory: Path, broken: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", BUILD_GOLDEN, str(directory / GOLDEN_NAME), broken or "-", MARKER],
        capture_output=True,
        text=True,
        env=worker_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return directory


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_golden(tmp_path_factory.mktemp("golden"))


def run_mutations(
    golden: Path, work: Path, mutations: list[dict[str, Any]], broken: str = ""
) -> Counter[str]:
    """Outcome counts; every UNDETECTED or CRASH result is printed. ``READER_CRASH``
    counts the tracebacks of read-all, read and a projection catch-up (issue #18)."""
    work.mkdir(exist_ok=True)
    options = [str(work), *(["--broken", broken] if broken else [])]
    outcomes: Counter[str] = Counter()
    with FaultWorker("flips", str(golden), *options, name="flips") as worker:
        ok, head, _ = worker.expect("READY").split(" ")
        assert (ok, head) == ("1", "60"), "the golden store itself must verify"
        for mutation in mutations:
            worker.send(json.dumps(mutation))
            result = json.loads(worker.expect("RES"))  # a hang fails here (worker guard)
            kind = result["outcome"]
            if kind == "detected":  # e.g. "verify:checksum@pos", "verify:anchor", "open:..."
                what = result.get("problem") or result.get("error")
                kind = f"{result['how']}:{what}{'@pos' if result.get('position') else ''}"
            outcomes[kind] += 1
            if result["outcome"] in ("UNDETECTED", "CRASH"):
                print(f"{result['outcome']}: {mutation} -> {result}")
            for crash in result["reader_crashes"]:
                outcomes["READER_CRASH"] += 1
                print(f"READER_CRASH: {mutation} -> {crash}")
        worker.send("END")
        worker.expect("DONE")
        worker.finish()
    return outcomes


def _flips(path: Path, file: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    size = path.stat().st_size
    return [
        {"file": file, "op": "flip", "offset": rng.randrange(size), "bit": rng.randrange(8)}
        for _ in range(n)
    ]


def _truncations(path: Path, file: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    size = path.stat().st_size
    return [{"file": file, "op": "truncate", "length": rng.randrange(size)} for _ in range(n)]


def _bad(outcomes: Counter[str]) -> int:
    return outcomes["UNDETECTED"] + outcomes["CRASH"] + outcomes["READER_CRASH"]


def test_bit_flips_and_truncations_of_the_store_are_detected(golden: Path, tmp_path: Path) -> None:
    rng = random.Random(fault_seed("store flips"))
    db, wal = golden / GOLDEN_NAME, golden / f"{GOLDEN_NAME}-wal"
    mutations = (
        _flips(db, "db", DB_FLIPS, rng)
        + _flips(wal, "wal", WAL_FLIPS, rng)
        + _truncations(db, "db", TRUNCATIONS, rng)
        + _truncations(wal, "wal", TRUNCATIONS, rng)
    )
    started = time.monotonic()
    outcomes = run_mutations(golden, tmp_path / "work", mutations)
    figure(
        "2 store corruption",
        f"{len(mutations)} mutations ({DB_FLIPS} db flips, {WAL_FLIPS} WAL flips, "
        f"{2 * TRUNCATIONS} truncations): {dict(outcomes)}; {_bad(outcomes)} undetected or "
        f"crashed; {outcomes['READER_CRASH']} tracebacks from read-all, read and a projection "
        f"catch-up [{time.monotonic() - started:.0f}s]",
    )
    assert _bad(outcomes) == 0, outcomes


def _metadata_flips(golden: Path) -> list[dict[str, Any]]:
    """Flip the lowest bit of the metadata marker in both files (M -> L: still valid JSON)."""
    out: list[dict[str, Any]] = []
    for file, name in (("db", GOLDEN_NAME), ("wal", f"{GOLDEN_NAME}-wal")):
        data = (golden / name).read_bytes()
        offset = data.find(MARKER.encode())
        while offset >= 0 and len(out) < 12:
            out.append({"file": file, "op": "flip", "offset": offset + 3, "bit": 0})
            offset = data.find(MARKER.encode(), offset + 1)
    return out


def test_harness_catches_a_checksum_that_skips_metadata(
    golden: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broken = build_golden(tmp_path_factory.mktemp("golden-broken"), broken="skip-metadata")
    work = tmp_path_factory.mktemp("work")
    honest = run_mutations(golden, work / "honest", _metadata_flips(golden))
    caught = run_mutations(broken, work / "broken", _metadata_flips(broken), "skip-metadata")
    figure(
        "2 broken checksum without metadata",
        f"harness found {caught['UNDETECTED']} undetected changes "
        f"(the real checksum: {honest['UNDETECTED']})",
    )
    assert honest["UNDETECTED"] == 0 and caught["UNDETECTED"] > 0


# -- archives -------------------------------------------------------------------------------


def _layout(data: bytes) -> tuple[int, list[int], int]:
    """(end of header, start offset of each record, start of the trailer) of an archive."""
    (size,) = struct.unpack_from(">I", data, 10)
    offset = 18 + size
    starts = []
    while struct.unpack_from(">I", data, offset)[0] != 0xFFFFFFFF:
        starts.append(offset)
        offset += 8 + struct.unpack_from(">I", data, offset)[0] + 32
    return 18 + size, starts, offset


def _expected_record(offset: int, header_end: int, starts: list[int], trailer: int) -> int | None:
    if offset < header_end:
        return None
    return sum(1 for s in starts if s <= offset) - 1 if offset < trailer else len(starts)


def test_archive_damage_names_the_damaged_record(golden: Path, tmp_path: Path) -> None:
    rng = random.Random(fault_seed("archive flips"))
    copy = tmp_path / "copy.db"
    for suffix in ("", "-wal", ".anchor", ".anchor.key"):
        (tmp_path / f"copy.db{suffix}").write_bytes(
            (golden / f"{GOLDEN_NAME}{suffix}").read_bytes()
        )
    with open_store(f"sqlite:///{copy}") as store:
        export_archive(store, tmp_path / "golden.llar")
    data = (tmp_path / "golden.llar").read_bytes()
    header_end, starts, trailer = _layout(data)
    target = tmp_path / "damaged.llar"
    results: Counter[str] = Counter()
    cases: list[tuple[bytes, int]] = []
    for _ in range(ARCHIVE_FLIPS):
        offset = rng.randrange(len(data))
        flipped = bytearray(data)
        flipped[offset] ^= 1 << rng.randrange(8)
        cases.append((bytes(flipped), offset))
    cases += [(data[:n], n) for n in (rng.randrange(len(data)) for _ in range(TRUNCATIONS * 4))]
    cases.append((data + b"\0", len(data)))
    for damaged, offset in cases:
        target.write_bytes(damaged)
        try:
            read_archive(target)
        except ArchiveCorrupt as exc:
            want = _expected_record(offset, header_end, starts, trailer)
            results["named the damaged record" if exc.record_index == want else "MISPLACED"] += 1
        else:
            results["UNDETECTED"] += 1
    figure(
        "2 archive corruption",
        f"{len(cases)} damaged archives ({len(starts)} records): {dict(results)}",
    )
    assert results["named the damaged record"] == len(cases), results
