"""Harness 3 — disk full at many fill levels, and a read-only directory.

A writer appends batches of random sizes under ``RLIMIT_FSIZE`` (SIGXFSZ
ignored, so writes fail with EFBIG like on a full disk) until three appends
have failed, audits the store while it is full, then the limit is lifted
("space returns") and it appends again. Every failure must be the typed
``StoreUnavailable``; no acknowledged event may be lost; the chain must hold.

Broken variant caught here: a writer that acknowledges a failed append.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labledger import NewEvent, StoreUnavailable, init_store, open_store
from labledger.testing.faults import FaultWorker
from labledger.testing.workers import worker_env
from tests.faults.harness import AckLedger, Findings, chain_broken, fault_seed, figure, scaled

LEVELS = scaled(6, 40)


def fill(url: str, limit: int, seed: int, broken: str = "") -> tuple[AckLedger, Findings, int]:
    """One writer filling the disk at ``limit`` bytes; (ledger, findings, typed failures)."""
    ledger = AckLedger()
    options = [
        "--limit",
        str(limit),
        "--seed",
        str(seed),
        *(["--broken", broken] if broken else []),
    ]
    with FaultWorker("fill", url, *options, name=f"fill-{limit}") as worker:
        worker.expect("READY")
        worker.drain()
        ledger.feed(worker.name, worker.lines)
        full = sum(1 for line in worker.lines if line.startswith("FULL "))
        audit = [line for line in worker.lines if line.startswith("AUDIT ")]
    with open_store(url) as store:
        found = ledger.check(store)
    if not audit or not audit[0].startswith("AUDIT 1 "):
        found.add("audit", f"verify while full: {audit}")
    if not any(line.startswith("DONE") for line in worker.lines):
        found.add("resume", f"appends did not resume: {worker.lines[-3:]}")
    return ledger, found, full


def test_disk_full_at_many_levels(tmp_path: Path) -> None:
    rng = random.Random(fault_seed("disk full"))
    started = time.monotonic()
    acked = typed = 0
    total = Findings()
    for level in range(LEVELS):
        url = f"sqlite:///{tmp_path}/full-{level}.db"
        init_store(url)
        base = Path(url.removeprefix("sqlite:///")).stat().st_size
        limit = base + rng.randrange(8_000, 3_000_000)
        ledger, found, full = fill(url, limit, rng.getrandbits(32))
        total.merge(found)
        acked += len(ledger.acks)
        typed += full
    figure(
        "3 disk full",
        f"{LEVELS} fill levels: {typed} typed StoreUnavailable, 0 other errors; "
        f"{total.lost} lost of {acked} acknowledged; {total.torn} torn; "
        f"chain {'BROKEN' if chain_broken(total) else 'OK'}; appends resumed "
        f"[{time.monotonic() - started:.0f}s]",
    )
    assert not total.violations, total.violations[:10]


def test_harness_catches_acknowledging_a_failed_append(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/broken.db"
    init_store(url)
    limit = Path(tmp_path / "broken.db").stat().st_size + 200_000
    _, found, _ = fill(url, limit, fault_seed("disk full (broken: ack on error)"), "ack-on-error")
    figure("3 broken ack-on-error", f"harness found {found.lost} lost acknowledged batches")
    assert found.lost > 0


def _cli(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labledger", "--db", url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=worker_env(),
        timeout=120,
    )


def test_read_only_directory_is_a_clear_error_and_audit_works(tmp_path: Path) -> None:
    store_dir = tmp_path / "ro"
    store_dir.mkdir()
    url = f"sqlite:///{store_dir}/ro.db"
    init_store(url)
    with open_store(url) as store:
        store.append("s", [NewEvent.from_json("t.T", {"i": i}) for i in range(5)])
        before = store.verify()
    paths = [str(p) for p in store_dir.iterdir()] + [str(store_dir)]
    if subprocess.run(["chattr", "+i", *paths], capture_output=True).returncode:
        pytest.skip("needs chattr +i (root on a filesystem with the immutable flag)")
    try:
        with pytest.raises(StoreUnavailable, match=r"read-only|open"), open_store(url) as store:
            store.append("s", [NewEvent.from_json("t.T", {})])
        appended = _cli(url, "append", "s", stdin='{"type": "t.T", "data": {}}\n')
        verified = _cli(url, "--read-only", "verify")
        read = _cli(url, "--read-only", "read-all")
    finally:
        subprocess.run(["chattr", "-i", *paths], check=True)
    assert appended.returncode == 5 and "Traceback" not in appended.stderr, appended.stderr
    assert verified.returncode == 0, verified.stderr
    assert f'"head_hash":"{before.head_hash}"' in verified.stdout
    assert read.returncode == 0 and len(read.stdout.splitlines()) == 5
    figure(
        "3 read-only directory",
        f"append: exit 5 ({appended.stderr.strip()[:90]}…); "
        "--read-only verify: exit 0, head hash unchanged; read-all: 5 events",
    )
