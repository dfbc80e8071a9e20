"""The fault suite's common parts: seeds, figures, the acknowledgement ledger, fingerprints,
and a throwaway PostgreSQL cluster whose server may be SIGKILLed.

The acknowledgement ledger is the harnesses' source of truth. A writer prints
``TRY <ids> <stream> <seed> <n>`` before ``append`` and ``ACK <ids> <first>
<last> <already>`` after it returned; ``RETRY`` is the ACK of a batch appended
again with the same ids after its writer died. Checks *count* violations instead
of asserting at the first one, so that a test can show that a deliberately
broken variant is caught (violations > 0) as well as that the store is not.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from labledger import EventStore, RecordedEvent, open_store
from labledger.testing.faults import FaultWorker
from labledger.testing.profile import PROFILE

SEED_ENV = "LABLEDGER_FAULT_SEED"
FIGURES: list[tuple[str, str]] = []
"""(harness, figure) lines, printed at the end of the session by conftest."""

Batch = tuple[str, ...]


def scaled(short: int, long: int) -> int:
    """``short`` in the default profile, ``long`` with ``LABLEDGER_TEST_PROFILE=long``."""
    return long if PROFILE == "long" else short


def fault_seed(name: str) -> int:
    """The run's seed (``LABLEDGER_FAULT_SEED`` replays a run's choices, not its timing)."""
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"{name}: {SEED_ENV}={seed}")
    return seed


def figure(name: str, text: str) -> None:
    """Print a harness's figure and keep it for the session summary."""
    print(f"{name}: {text}")
    FIGURES.append((name, text))


@dataclass(frozen=True)
class Fingerprint:
    """What must not change: row count, head, head hash, and every stream's version."""

    rows: int
    head: int
    head_hash: str
    versions: tuple[tuple[str, int], ...]


def fingerprint(store: EventStore) -> Fingerprint:
    report = store.verify()
    assert report.ok, report.message
    rows = sum(1 for _ in store.read_all())
    versions = tuple(sorted((s.stream, s.version) for s in store.streams()))
    return Fingerprint(rows, report.head, report.head_hash, versions)


def _resume(workers: list[FaultWorker]) -> None:
    for w in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.proc.pid, signal.SIGCONT)


@dataclass
class Findings:
    """One check of the log against the acknowledgement ledger."""

    violations: list[str] = field(default_factory=list)
    lost: int = 0
    duplicates: int = 0
    torn: int = 0

    def merge(self, other: Findings) -> None:
        self.violations += other.violations
        self.lost += other.lost
        self.duplicates += other.duplicates
        self.torn += other.torn

    def add(self, kind: str, text: str) -> None:
        self.violations.append(f"{kind}: {text}")
        if kind == "lost":
            self.lost += 1
        elif kind == "duplicate":
            self.duplicates += 1
        elif kind == "torn":
            self.torn += 1


@dataclass
class AckLedger:
    """Everything every writer printed, across kills, and what the log was seen to hold."""

    tries: dict[Batch, str] = field(default_factory=dict)  # ids -> "STREAM SEED N IDS"
    acks: dict[Batch, tuple[int, int]] = field(default_factory=dict)
    landed: set[Batch] = field(default_factory=set)
    in_doubt: set[Batch] = field(default_factory=set)  # tried, writer killed before its ACK
    doubt_present: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _open: dict[str, Batch] = field(default_factory=dict)  # worker -> batch tried, no ACK yet
    _fed: dict[str, int] = field(default_factory=dict)
    _retried: set[Batch] = field(default_factory=set)

    def feed(self, worker: str, lines: list[str]) -> None:
        """Take a worker's lines (a last line cut off by a kill is ignored)."""
        for line in lines:
            if not line.endswith("\n"):
                continue
            tag, _, payload = line.rstrip("\n").partition(" ")
            if tag == "TRY":
                ids, stream, seed, n = payload.split(" ")
                batch = tuple(ids.split(","))
                self.tries[batch] = f"{stream} {seed} {n} {ids}"
                self._open[worker] = batch
            elif tag in ("ACK", "RETRY"):
                ids, first, last, already = payload.split(" ")
                batch = tuple(ids.split(","))
                self.acks[batch] = (int(first), int(last))
                if already == "1" and batch in self.in_doubt:  # it had landed before
                    self.doubt_present += 1
                if tag == "RETRY":
                    self._retried.add(batch)
                    self.retries["landed before" if already == "1" else "appended now"] += 1
                elif self._open.get(worker) == batch:
                    del self._open[worker]
            elif tag == "FAIL" and worker in self._open:
                self.in_doubt.add(self._open[worker])  # the server died under this append
            elif tag == "ERROR":
                self.errors.append(f"{worker}: {payload}")
            elif tag not in ("READY", "FAIL", "FULL", "AUDIT", "DONE"):
                self.errors.append(f"{worker} said {line.rstrip()!r}")

    def killed(self, worker: str) -> str:
        """The worker died: its open batch is in doubt. Returns it as a --retry value."""
        batch = self._open.pop(worker, None)
        if batch is None or batch in self.acks:
            return ""
        self.in_doubt.add(batch)
        return self.tries[batch]

    def check(
        self,
        store: EventStore,
        events: list[RecordedEvent] | None = None,
        acks: dict[Batch, tuple[int, int]] | None = None,
    ) -> Findings:
        """Compare the log with the ledger.

        For a live check (writers still running) pass ``acks`` as taken *before*
        reading ``events``, and feed the lines that arrived meanwhile before calling:
        every acknowledged batch must then be in the read, every read event tried.
        """
        found = Findings()
        events = list(store.read_all()) if events is None else events
        if [e.position for e in events] != list(range(1, len(events) + 1)):
            found.add("gap", "positions are not 1..head")
        by_id: dict[str, RecordedEvent] = {}
        for e in events:
            if e.id in by_id:
                found.add("duplicate", f"id {e.id} at {by_id[e.id].position} and {e.position}")
            by_id[e.id] = e
        tried = {i for batch in self.tries for i in batch}
        for phantom in sorted(set(by_id) - tried):
            found.add("phantom", f"{phantom} was never tried")
        for batch in self.tries:
            self._check_batch(batch, by_id, found)
        for batch, (first, last) in (self.acks if acks is None else acks).items():
            if not all(i in by_id for i in batch):
                found.add("lost", f"acknowledged batch {batch[0]}… ({len(batch)} events)")
            elif first > 0 and [by_id[i].position for i in batch] != list(range(first, last + 1)):
                found.add("moved", f"acknowledged batch {batch[0]}… is not at {first}..{last}")
        report = store.verify()  # under concurrent appends too (a fixed bug: test_findings)
        if not report.ok:
            found.add("chain", report.message)
        found.violations += [f"error: {e}" for e in self.errors]
        return found

    def _check_batch(self, batch: Batch, by_id: dict[str, RecordedEvent], found: Findings) -> None:
        present = [i in by_id for i in batch]
        if not any(present):
            if batch in self.landed:
                found.add("lost", f"batch {batch[0]}… vanished after it had landed")
            return
        if not all(present):
            found.add("torn", f"batch {batch[0]}…: {present}")
            return
        stored = [by_id[i] for i in batch]
        first = stored[0]
        if [e.position for e in stored] != list(range(first.position, first.position + len(batch))):
            found.add("torn", f"batch {batch[0]}… is not contiguous")
        if {e.stream for e in stored} != {first.stream} or [e.stream_version for e in stored] != (
            list(range(first.stream_version, first.stream_version + len(batch)))
        ):
            found.add("torn", f"batch {batch[0]}… has broken stream versions")
        self.landed.add(batch)

    def sync(self, worker: FaultWorker) -> None:
        """Feed the lines of ``worker`` read since the last sync."""
        done = self._fed.get(worker.name, 0)
        self.feed(worker.name, worker.lines[done:])
        self._fed[worker.name] = len(worker.lines)

    def unresolved(self, events: list[RecordedEvent]) -> None:
        """In-doubt batches nobody retried: count those that landed anyway."""
        ids = {e.id for e in events}
        self.doubt_present += sum(1 for b in self.in_doubt - self._retried if b[0] in ids)

    def live_check(self, url: str, workers: list[FaultWorker]) -> Findings:
        """Check with writers alive (acks taken before the read, TRYs after).

        The writers are paused (SIGSTOP, wherever they are, even mid-transaction)
        while the log is read, so it does not outgrow the check in long runs.
        """
        if PROFILE != "long":  # short runs: the log cannot outgrow the check; no pausing
            return self._live_check(url, workers)
        for w in workers:
            os.kill(w.proc.pid, signal.SIGSTOP)
        # A writer stopped inside SQLite's WAL bookkeeping can hold a lock the reader
        # needs; the watchdog lets the writers go on rather than let the check hang.
        watchdog = threading.Timer(20.0, _resume, args=(workers,))
        watchdog.start()
        try:
            return self._live_check(url, workers)
        finally:
            watchdog.cancel()
            _resume(workers)

    def _live_check(self, url: str, workers: list[FaultWorker]) -> Findings:
        for w in workers:
            w.pending_lines()
            self.sync(w)
        acked = dict(self.acks)
        with open_store(url) as store:
            events = list(store.read_all())
            deadline = time.monotonic() + 10  # the TRY line was written; our pump may lag
            while True:
                for w in workers:
                    w.pending_lines()
                    self.sync(w)
                tried = {i for batch in self.tries for i in batch}
                if all(e.id in tried for e in events) or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            return self.check(store, events, acks=acked)

    def summary(self, found: Findings, kills: str) -> str:
        return (
            f"{found.lost} lost of {len(self.acks)} acknowledged over {kills}; "
            f"{found.duplicates} duplicates; {found.torn} torn; {len(self.in_doubt)} in doubt "
            f"({self.doubt_present} present); chain {'BROKEN' if chain_broken(found) else 'OK'}; "
            f"retries {dict(self.retries)}"
        )


def chain_broken(found: Findings) -> bool:
    return any(v.startswith("chain") for v in found.violations)


# -- a PostgreSQL cluster of our own, to SIGKILL -----------------------------------------

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only unreaped


class ThrowawayPostgres:
    """initdb + pg_ctl as the ``postgres`` user in a temporary directory; killable."""

    def __init__(self, *settings: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ll-faults-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.settings = settings
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "--auth=trust", "-U", "postgres")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: object) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, argv)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        """Start the server as our child (we reap it: no zombie keeps its pid "running")."""
        settings = [a for s in ("listen_addresses=127.0.0.1", *self.settings) for a in ("-c", s)]
        with (self.dir / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(PG_BIN / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.dir),
                    *settings,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                user="postgres",
                group="postgres",
                extra_groups=[],
                cwd=self.dir,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log_tail = (self.dir / "server.log").read_text()[-3000:]
                    raise RuntimeError(f"PostgreSQL did not start:\n{log_tail}") from None
                time.sleep(0.05)

    def _pids(self) -> list[int]:
        """The postmaster and its children (read from postmaster.pid and /proc)."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    stat = (proc / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(proc.name))
        return [postmaster, *children]

    def kill(self) -> None:
        """SIGKILL the postmaster and every server process at once: a server crash."""
        pids = self._pids()
        if not pids:
            return
        os.kill(pids[0], signal.SIGSTOP)  # a frozen postmaster forks no new backend meanwhile
        pids = self._pids()
        for pid in [*pids[1:], pids[0]]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
