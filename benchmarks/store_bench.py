"""labledger's store beside its raw-engine twin, in one run.

    python benchmarks/store_bench.py [--quick] [--sqlite-only] [--pg-url URL] [--out DIR]

For each backend (SQLite, PostgreSQL) and each case, labledger and a raw
twin written directly against the driver (stdlib ``sqlite3``, ``psycopg`` 3)
do the same work on the same events in the same run, alternating who goes
first from round to round; the table shows the median of the rounds and the
ratio labledger/raw. See benchmarks/README.md for what each case measures.
"""

from __future__ import annotations

import abc
import argparse
import json
import os
import platform
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

import labledger
from labledger import NO_STREAM, NewEvent

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
EVENT_TYPE = "lab.TelemetryPacket"
READ_PAGE = 1000  # labledger's read_all page and the raw server-side cursor's itersize


# -- the payload --------------------------------------------------------------------


class Metrics(msgspec.Struct):
    step: int
    loss: float
    lr: float
    grad_norm: float
    tokens_per_s: float
    gpu_util: float
    gpu_mem_gb: float
    gpu_temp_c: float
    power_w: float


class TelemetryPacket(msgspec.Struct):
    rig: str
    host: str
    run_id: str
    seq: int
    ts_us: int
    status: str
    metrics: Metrics


DECODE_PACKET = msgspec.json.Decoder(TelemetryPacket).decode


class PacketFactory:
    """Telemetry packets of about 300 bytes of JSON, each with its own id and values."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.run_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        self.seq = 0

    def packet(self) -> dict[str, Any]:
        rng, self.seq = self.rng, self.seq + 1
        return {
            "rig": f"rig-{self.seq % 16:02d}",
            "host": f"gpu-node-{self.seq % 64:03d}.lab.internal",
            "run_id": self.run_id,
            "seq": self.seq,
            "ts_us": 1_790_000_000_000_000 + self.seq * 250_000,
            "status": "ok",
            "metrics": {
                "step": self.seq * 10,
                "loss": round(rng.uniform(0.8, 3.5), 6),
                "lr": 3e-4,
                "grad_norm": round(rng.uniform(0.1, 4.0), 6),
                "tokens_per_s": round(rng.uniform(15_000, 21_000), 2),
                "gpu_util": round(rng.uniform(0.6, 1.0), 4),
                "gpu_mem_gb": round(rng.uniform(40, 79), 3),
                "gpu_temp_c": round(rng.uniform(55, 84), 2),
                "power_w": round(rng.uniform(250, 700), 1),
            },
        }

    def events(self, n: int) -> list[NewEvent]:
        return [NewEvent.from_json(EVENT_TYPE, self.packet()) for _ in range(n)]


# -- what is measured ------------------------------------------------------------------


class Subject(abc.ABC):
    """One side of a comparison: appends batches to a stream, scans the whole log."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}  # the single writer knows each stream's version

    def append(self, stream: str, events: Sequence[NewEvent], batch_size: int) -> None:
        """Append ``events`` to ``stream``, ``batch_size`` events per durable transaction."""
        version = self.versions.get(stream, -1)
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            self.commit_batch(stream, batch, version)
            version += len(batch)
        self.versions[stream] = version

    @abc.abstractmethod
    def commit_batch(self, stream: str, batch: Sequence[NewEvent], version: int) -> None:
        """One transaction; ``version`` is the stream's last version before it (-1: none)."""

    @abc.abstractmethod
    def read_all(self) -> int:
        """Scan the log in position order, decoding every payload; returns the count."""

    @abc.abstractmethod
    def count(self) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class LabledgerSubject(Subject):
    def __init__(self, url: str) -> None:
        super().__init__()
        labledger.init_store(url)
        self.store = labledger.open_store(url)

    def commit_batch(self, stream: str, batch: Sequence[NewEvent], version: int) -> None:
        self.store.append(stream, batch, NO_STREAM if version < 0 else version)

    def read_all(self) -> int:
        n = 0
        for event in self.store.read_all(1, batch_size=READ_PAGE):
            DECODE_PACKET(event.data)
            n += 1
        return n

    def count(self) -> int:
        return self.store.head()

    def close(self) -> None:
        self.store.close()


def raw_rows(stream: str, batch: Sequence[NewEvent], version: int) -> list[tuple[Any, ...]]:
    return [(e.id, stream, version + 1 + k, e.type, e.data) for k, e in enumerate(batch)]


RAW_COLUMNS = "position, id, stream, version, type, data"
RAW_INSERT_SQLITE = (
    "INSERT INTO raw_events (id, stream, version, type, data) VALUES (?, ?, ?, ?, ?)"
)
RAW_INSERT_PG = (
    "INSERT INTO raw_events (id, stream, version, type, data) VALUES (%s, %s, %s, %s, %s)"
)
RAW_SCAN = f"SELECT {RAW_COLUMNS} FROM raw_events ORDER BY position"
RAW_TABLE_SQLITE = """
CREATE TABLE raw_events (
    position INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (stream, version)
)"""
RAW_TABLE_PG = """
CREATE TABLE raw_events (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    stream TEXT NOT NULL,
    version BIGINT NOT NULL,
    type TEXT NOT NULL,
    data BYTEA NOT NULL,
    UNIQUE (stream, version)
)"""


class RawSqliteSubject(Subject):
    """stdlib sqlite3 with labledger's pragmas: WAL, synchronous=FULL, BEGIN IMMEDIATE."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.execute(RAW_TABLE_SQLITE)

    def commit_batch(self, stream: str, batch: Sequence[NewEvent], version: int) -> None:
        rows = raw_rows(stream, batch, version)
        self.conn.execute("BEGIN IMMEDIATE")
        if len(rows) == 1:
            self.conn.execute(RAW_INSERT_SQLITE, rows[0])
        else:
            self.conn.executemany(RAW_INSERT_SQLITE, rows)
        self.conn.execute("COMMIT")

    def read_all(self) -> int:
        n = 0
        for row in self.conn.execute(RAW_SCAN):
            DECODE_PACKET(row[5])
            n += 1
        return n

    def count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM raw_events").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


class RawPostgresSubject(Subject):
    """psycopg 3: one commit per insert or per executemany batch; a server-side cursor scan."""

    def __init__(self, url: str) -> None:
        import psycopg

        super().__init__()
        self.conn = psycopg.connect(url)
        self.conn.execute("SET synchronous_commit = on")
        self.conn.execute(RAW_TABLE_PG)
        self.conn.commit()

    def commit_batch(self, stream: str, batch: Sequence[NewEvent], version: int) -> None:
        rows = raw_rows(stream, batch, version)
        with self.conn.cursor() as cur:
            if len(rows) == 1:
                cur.execute(RAW_INSERT_PG, rows[0])
            else:
                cur.executemany(RAW_INSERT_PG, rows)
        self.conn.commit()

    def read_all(self) -> int:
        n = 0
        with self.conn.cursor(name="raw_scan") as cur:
            cur.itersize = READ_PAGE
            cur.execute(RAW_SCAN)
            for row in cur:
                DECODE_PACKET(row[5])
                n += 1
        self.conn.commit()
        return n

    def count(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM raw_events").fetchone()
        self.conn.commit()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Pair:
    backend: str
    labledger: Subject
    raw: Subject

    def in_turn(self, round_no: int) -> list[tuple[str, Subject]]:
        """Both subjects, labledger first in even rounds and raw first in odd ones."""
        both = [("labledger", self.labledger), ("raw", self.raw)]
        return both if round_no % 2 == 0 else both[::-1]


# -- backends ----------------------------------------------------------------------------


@contextmanager
def sqlite_pair() -> Iterator[Pair]:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="labledger-bench-")))
        lab = stack.enter_context(closing(LabledgerSubject(f"sqlite:///{tmp / 'labledger.db'}")))
        raw = stack.enter_context(closing(RawSqliteSubject(tmp / "raw.db")))
        yield Pair("sqlite", lab, raw)


def libpq_url(url: str, database: str | None = None) -> str:
    """``url`` as psycopg wants it (no ``+driver``), on ``database`` if given."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A uniquely named database on the server, dropped afterwards; yields its URL."""
    import psycopg

    admin = libpq_url(server_url)
    name = f"labledger_bench_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield libpq_url(server_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_pair(server_url: str) -> Iterator[Pair]:
    with ExitStack() as stack:
        url = stack.enter_context(scratch_database(server_url))
        lab = stack.enter_context(closing(LabledgerSubject(url)))
        raw = stack.enter_context(closing(RawPostgresSubject(url)))
        yield Pair("postgresql", lab, raw)


def server_version(server_url: str) -> str:
    import psycopg

    with psycopg.connect(libpq_url(server_url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# -- running the cases -----------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int
    single_events: int
    batch_events: dict[int, int]  # batch size: events per round
    read_events: int  # the log is topped up to at least this before the read rounds


PROFILES = {
    "default": Profile("default", 7, 1000, {100: 20_000, 1000: 30_000}, 200_000),
    "quick": Profile("quick", 3, 300, {100: 5_000, 1000: 10_000}, 40_000),
}


@dataclass(frozen=True)
class AppendCase:
    name: str
    batch_size: int
    events: int


def append_cases(profile: Profile) -> list[AppendCase]:
    cases = [AppendCase("append_single", 1, profile.single_events)]
    cases += [AppendCase(f"append_batch_{n}", n, e) for n, e in profile.batch_events.items()]
    return cases


Samples = dict[str, list[float]]  # events/s of each round, by "labledger" and "raw"


@dataclass(frozen=True)
class CaseResult:
    """One case on one backend: medians of the rounds, and every round for the record."""

    name: str
    backend: str
    events: int
    rounds: int
    events_per_s: float
    raw_events_per_s: float
    ratio_to_raw: float
    samples: tuple[float, ...]
    raw_samples: tuple[float, ...]

    @classmethod
    def of(cls, name: str, backend: str, events: int, samples: Samples) -> CaseResult:
        lab, raw = samples["labledger"], samples["raw"]
        lab_median, raw_median = statistics.median(lab), statistics.median(raw)
        return cls(
            name=name,
            backend=backend,
            events=events,
            rounds=len(raw),
            events_per_s=round(lab_median, 1),
            raw_events_per_s=round(raw_median, 1),
            ratio_to_raw=round(lab_median / raw_median, 3),
            samples=tuple(round(x, 1) for x in lab),
            raw_samples=tuple(round(x, 1) for x in raw),
        )


def no_samples() -> Samples:
    return {"labledger": [], "raw": []}


def rate(n: int, work: Callable[[], object]) -> float:
    """Events per second of one timed run of ``work``."""
    start = time.perf_counter()
    work()
    return n / (time.perf_counter() - start)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def warm_up(pair: Pair, factory: PacketFactory) -> None:
    """Untimed: fill pools, caches and prepared statements before the first round."""
    events = factory.events(1100)
    for _, subject in pair.in_turn(0):
        subject.append("warm-up", events[:50], 1)
        subject.append("warm-up", events[50:150], 100)
        subject.append("warm-up", events[150:], 1000)
        subject.read_all()


def run_appends(pair: Pair, profile: Profile, factory: PacketFactory) -> list[CaseResult]:
    cases = append_cases(profile)
    samples = {c.name: no_samples() for c in cases}
    for r in range(profile.rounds):
        progress(f"  {pair.backend}: append round {r + 1}/{profile.rounds}")
        for case in cases:
            events = factory.events(case.events)
            stream = f"{case.name}/round-{r}"
            for who, subject in pair.in_turn(r):
                work = partial(subject.append, stream, events, case.batch_size)
                samples[case.name][who].append(rate(len(events), work))
    return [CaseResult.of(c.name, pair.backend, c.events, samples[c.name]) for c in cases]


def fill_log(pair: Pair, target: int, factory: PacketFactory) -> int:
    """Untimed: append the same events to both logs until each holds ``target``."""
    missing = target - pair.labledger.count()
    if missing > 0:
        events = factory.events(missing)
        for _, subject in pair.in_turn(0):
            subject.append("fill", events, 1000)
    lab, raw = pair.labledger.count(), pair.raw.count()
    if lab != raw:
        raise RuntimeError(f"{pair.backend}: labledger holds {lab} events, raw {raw}")
    return lab


def run_reads(pair: Pair, profile: Profile, factory: PacketFactory) -> CaseResult:
    n = fill_log(pair, profile.read_events, factory)
    samples = no_samples()
    for r in range(profile.rounds):
        progress(f"  {pair.backend}: read round {r + 1}/{profile.rounds} ({n:,} events)")
        for who, subject in pair.in_turn(r):
            start = time.perf_counter()
            seen = subject.read_all()
            samples[who].append(seen / (time.perf_counter() - start))
            if seen != n:
                raise RuntimeError(f"{pair.backend} {who}: read {seen} of {n} events")
    return CaseResult.of("read_all", pair.backend, n, samples)


def bench(pair: Pair, profile: Profile) -> list[CaseResult]:
    factory = PacketFactory()
    warm_up(pair, factory)
    results = run_appends(pair, profile, factory)
    results.append(run_reads(pair, profile, factory))
    return results


# -- reporting ---------------------------------------------------------------------------


def header(profile: Profile, pg_version: str | None) -> str:
    factory = PacketFactory()
    payload = len(factory.events(1)[0].data)
    parts = [
        f"profile {profile.name}: median of {profile.rounds} rounds",
        f"{os.cpu_count()} CPUs",
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    if pg_version:
        parts.append(f"PostgreSQL {pg_version}")
    parts.append(f"payload ~{payload} B JSON")
    return "labledger store benchmark: " + ", ".join(parts)


def table(results: Sequence[CaseResult]) -> str:
    head = (
        f"{'case':<18} {'backend':<11} {'events':>8} "
        f"{'labledger ev/s':>15} {'raw ev/s':>12} {'ratio':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.name:<18} {r.backend:<11} {r.events:>8,} "
            f"{r.events_per_s:>15,.0f} {r.raw_events_per_s:>12,.0f} {r.ratio_to_raw:>6.2f}"
        )
    return "\n".join(lines)


def write_json(results: Sequence[CaseResult], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "store_bench.json"
    path.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return path


# -- command line ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and rounds (~15 s)")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("LABLEDGER_BENCH_PG_URL") or DEFAULT_PG_URL,
        help="server to create the scratch database on (default: $LABLEDGER_BENCH_PG_URL, "
        f"else {DEFAULT_PG_URL})",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    profile = PROFILES["quick" if args.quick else "default"]
    pg_version = None
    if not args.sqlite_only:
        try:
            pg_version = server_version(args.pg_url)
        except Exception as exc:
            print(
                f"cannot reach PostgreSQL ({exc}); use --sqlite-only or --pg-url", file=sys.stderr
            )
            return 2
    started = time.perf_counter()
    results: list[CaseResult] = []
    with sqlite_pair() as pair:
        results += bench(pair, profile)
    if pg_version:
        with postgres_pair(args.pg_url) as pair:
            results += bench(pair, profile)
    print(header(profile, pg_version))
    print(table(results))
    path = write_json(results, args.out)
    print(f"ratio = labledger/raw; {time.perf_counter() - started:.0f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
