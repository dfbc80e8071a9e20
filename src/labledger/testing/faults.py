"""Worker processes for the fault-injection suite (``tests/faults``), and its helpers.

Run a worker as ``python -m labledger.testing.faults VERB URL [options]``; the
parent drives it with :class:`FaultWorker` (the line protocol of
:mod:`labledger.testing.workers`: ``TAG payload`` lines, ``READY`` first).

``writer``
    Appends batches of 1-5 events to ``--streams`` streams (ANY) forever,
    printing ``TRY <ids> <stream> <seed> <n>`` before each append and
    ``ACK <ids> <first> <last> <already>`` after it returned. ``--retry`` (repeatable)
    first appends again batches a killed writer had tried without an ACK.
    ``--persist`` rides out a server restart: a batch that failed with
    ``StoreUnavailable`` is retried with the same ids until it lands.
    ``--wal-autocheckpoint N`` makes SQLite checkpoint every N pages, so kills
    land mid-checkpoint.
``fill``
    Appends under ``RLIMIT_FSIZE`` (SIGXFSZ ignored: writes fail with EFBIG)
    until ``--failures`` appends have failed, audits the store while full,
    then lifts the limit ("space returns") and appends again.
``flips``
    Reads mutations of a golden SQLite store (JSON lines on stdin: a bit flip or
    a truncation of its database or WAL file), applies each to a fresh copy,
    opens and verifies it, and prints ``RES <json>``: ``detected`` (a typed
    error or a failed verify, with the position it names), ``unchanged`` (the
    logical content is byte-identical to the golden's: the flip hit unused
    space), ``UNDETECTED`` or ``CRASH`` (an untyped exception). Then, on another
    fresh copy, the user's readers (``read-all``, ``read``, a projection catch-up)
    run, and ``reader_crashes`` lists every traceback they produced.
``project``
    Runs the deliberately non-idempotent :class:`TallyProjection`, slowly
    (``--pause-ms`` per event), printing ``BEGIN <pos>`` when a batch starts
    and ``COMMIT <pos>`` when it committed; the parent kills it mid-batch.

Broken variants (``--broken``), which the harnesses must catch:
``ack-early`` (writer acknowledges before ``append`` returns),
``async-commit`` (PostgreSQL ``synchronous_commit = off``),
``ack-on-error`` (fill acknowledges a failed append),
``split-txn`` (project commits rows and checkpoint in two transactions),
``skip-metadata`` (flips: a record checksum that leaves out the metadata).
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from labledger import NewEvent, StoreUnavailable, open_store
from labledger.errors import LabledgerError
from labledger.events.runs import Heartbeat
from labledger.events.typed import Typed
from labledger.projections import ProjectionEngine
from labledger.projections import checkpoint as cps
from labledger.projections.base import Projection, TableSet, Tx
from labledger.projections.checkpoint import Checkpoint
from labledger.store import ANY, EventStore, SqlEventStore
from labledger.store.base import RecordedEvent
from labledger.testing.workers import Worker, crash_event, worker_env

BROKEN = ("", "ack-early", "async-commit", "ack-on-error", "split-txn", "skip-metadata")


def _say(tag: str, payload: str = "") -> None:
    sys.stdout.write(f"{tag} {payload}\n" if payload else f"{tag}\n")
    sys.stdout.flush()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}".replace("\n", " ")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# -- engine tweaks (the store's own settings stay; these run after them) ----------------


def _on_connect(store: SqlEventStore, statement: str) -> None:
    """Run ``statement`` on every new connection of ``store`` (after its own settings)."""
    engine = store.engine

    @sa.event.listens_for(engine, "connect")
    def _run(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(statement)
        cur.close()
        if not store.url.startswith("sqlite"):
            dbapi_conn.commit()

    engine.dispose()  # pooled connections were made without it


# -- writer -------------------------------------------------------------------------


def _append(store: EventStore, stream: str, events: list[NewEvent], persist: bool) -> str:
    """Append; returns ``"<first> <last> <already>"``. With ``persist`` rides out outages."""
    while True:
        try:
            result = store.append(stream, events, ANY)
        except StoreUnavailable as exc:
            if not persist:
                raise
            _say("FAIL", _describe(exc))
            time.sleep(0.05)
            continue
        return f"{result.first_position} {result.last_position} {int(result.already_appended)}"


def _writer(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    store = SqlEventStore(args.url)
    if args.wal_autocheckpoint and args.url.startswith("sqlite"):
        _on_connect(store, f"PRAGMA wal_autocheckpoint={args.wal_autocheckpoint}")
    if args.broken == "async-commit":
        _on_connect(store, "SET synchronous_commit = off")
    _say("READY")
    try:
        for retry in args.retry:
            stream, seed, n, ids = retry.split(" ")
            events = [crash_event(int(seed), int(n), i, id) for i, id in enumerate(ids.split(","))]
            _say("RETRY", f"{ids} {_append(store, stream, events, args.persist)}")
        n = 0
        while True:
            stream = f"c{rng.randrange(args.streams)}"
            events = [crash_event(args.seed, n, i, _uuid(rng)) for i in range(rng.randint(1, 5))]
            ids = ",".join(e.id for e in events)
            _say("TRY", f"{ids} {stream} {args.seed} {n}")
            if args.broken == "ack-early":  # the bug: acknowledged before the commit
                _say("ACK", f"{ids} -1 -1 0")
                time.sleep(0.02)
                _append(store, stream, events, args.persist)
            else:
                _say("ACK", f"{ids} {_append(store, stream, events, args.persist)}")
            n += 1
    except Exception as exc:
        _say("ERROR", _describe(exc))
        return 1


# -- fill (disk full) -----------------------------------------------------------------


def _fill(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death
    store = open_store(args.url)
    store.head()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.limit, hard))
    _say("READY")
    failures, n = 0, 0
    while failures < args.failures:
        n += 1
        stream = f"f{rng.randrange(5)}"
        pad = "x" * rng.choice((10, 500, 4000, 20000, 60000))
        events = [
            NewEvent.from_json("test.Fill", {"n": n, "i": i, "pad": pad}, id=_uuid(rng))
            for i in range(rng.randint(1, 5))
        ]
        ids = ",".join(e.id for e in events)
        _say("TRY", f"{ids} {stream} {args.seed} {n}")
        try:
            result = store.append(stream, events, ANY)
        except StoreUnavailable as exc:
            failures += 1
            _say("FULL", _describe(exc))
            if args.broken == "ack-on-error":  # the bug: an error acknowledged as success
                _say("ACK", f"{ids} -1 -1 0")
            continue
        except Exception as exc:
            _say("ERROR", _describe(exc))
            return 1
        _say("ACK", f"{ids} {result.first_position} {result.last_position} 0")
    try:
        report = store.verify()  # auditing still works while the disk is full
        _say("AUDIT", f"{int(report.ok)} {report.head} {report.message}")
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space returns
        for i in range(3):
            event = NewEvent.from_json("test.Fill", {"n": -1, "i": i, "pad": ""}, id=_uuid(rng))
            _say("TRY", f"{event.id} after {args.seed} {-1 - i}")
            result = store.append("after", [event], ANY)
            _say("ACK", f"{event.id} {result.first_position} {result.last_position} 0")
    except Exception as exc:
        _say("ERROR", _describe(exc))
        return 1
    store.close()
    _say("DONE")
    return 0


# -- flips (storage-level corruption of a golden store) -----------------------------------

GOLDEN_NAME = "golden.db"
SIDE_FILES = ("", "-wal", ".anchor", ".anchor.key")
"""The files of a store: the database, its WAL, the head anchor and the anchor's key."""


def skip_metadata_checksum() -> None:
    """Install the broken variant: record checksums that leave the metadata out."""
    from labledger.store import integrity

    honest: Any = integrity.record_checksum

    def broken(*fields: Any) -> bytes:
        return bytes(honest(*fields[:-1], b""))

    # integrity.row_checksum computes it on verify; the planner frames rows with
    # RowFramer on write, which is pointed at the same broken function here.
    setattr(integrity, "record_checksum", broken)  # noqa: B010
    setattr(  # noqa: B010
        integrity.RowFramer, "checksum", lambda self, row: integrity.row_checksum(row)
    )


def store_content(store: EventStore) -> str:
    """SHA-256 of everything a reader can see: every record, the stream index, nonces."""
    import hashlib

    import msgspec

    digest = hashlib.sha256()
    for e in store.read_all(batch_size=500):
        digest.update(msgspec.msgpack.encode(e))
    digest.update(msgspec.msgpack.encode(store.streams()))
    digest.update(msgspec.msgpack.encode(store.nonce_stats()))
    return digest.hexdigest()


def _mutate(golden: Path, work: Path, mutation: dict[str, Any]) -> str:
    import shutil

    for suffix in SIDE_FILES:
        (work / f"m.db{suffix}").unlink(missing_ok=True)
        (work / "m.db-shm").unlink(missing_ok=True)
        if (golden / f"{GOLDEN_NAME}{suffix}").exists():
            shutil.copyfile(golden / f"{GOLDEN_NAME}{suffix}", work / f"m.db{suffix}")
    target = work / ("m.db-wal" if mutation["file"] == "wal" else "m.db")
    if mutation["op"] == "none":
        return f"sqlite:///{work / 'm.db'}"
    with target.open("r+b") as fh:
        if mutation["op"] == "truncate":
            fh.truncate(mutation["length"])
        else:
            fh.seek(mutation["offset"])
            byte = fh.read(1)[0] ^ (1 << mutation["bit"])
            fh.seek(mutation["offset"])
            fh.write(bytes([byte]))
    return f"sqlite:///{work / 'm.db'}"


def probe(url: str, golden_content: str) -> dict[str, Any]:
    """Open and verify a (possibly damaged) store; how its damage showed, if it did."""
    import traceback

    try:
        store = open_store(url)
    except LabledgerError as exc:
        return {"outcome": "detected", "how": "open", "error": type(exc).__name__}
    except Exception as exc:
        return {"outcome": "CRASH", "error": _describe(exc), "tb": traceback.format_exc()[-1500:]}
    try:
        report = store.verify()
        if not report.ok:
            return {
                "outcome": "detected",
                "how": "verify",
                "problem": report.problem.value if report.problem else None,
                "position": report.first_bad_position,
                "message": report.message[:200],
            }
        content = store_content(store)
    except LabledgerError as exc:
        return {"outcome": "detected", "how": "read", "error": type(exc).__name__}
    except Exception as exc:
        return {"outcome": "CRASH", "error": _describe(exc), "tb": traceback.format_exc()[-600:]}
    finally:
        store.close()
    if content == golden_content:
        return {"outcome": "unchanged"}
    return {"outcome": "UNDETECTED", "head": report.head}


def readers_probe(url: str) -> list[str]:
    """What a user's readers do on a (possibly damaged) store: ``read-all`` and ``read``
    through the CLI, and a catch-up of every projection. Each untyped exception, or
    a traceback printed, is one entry; a typed error or success is none (issue #18)."""
    import contextlib
    import io
    import traceback

    from labledger.cli.main import run
    from labledger.projections import all_projections

    crashes: list[str] = []
    for argv in (["read-all"], ["read", "s0"], ["read-all", "--from-position", "41"]):
        out, err = io.TextIOWrapper(io.BytesIO()), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                run(["--db", url, *argv])
        except Exception as exc:
            crashes.append(f"{' '.join(argv)}: {_describe(exc)} {traceback.format_exc()[-400:]}")
        if "Traceback" in err.getvalue():
            crashes.append(f"{' '.join(argv)}: traceback printed {err.getvalue()[-400:]}")
    try:
        with open_store(url) as store:
            ProjectionEngine(store, all_projections()).run()
    except LabledgerError:
        pass
    except Exception as exc:
        crashes.append(f"projection catch-up: {_describe(exc)} {traceback.format_exc()[-400:]}")
    return crashes


def _flips(args: argparse.Namespace) -> int:
    import json

    if args.broken == "skip-metadata":
        skip_metadata_checksum()
    golden, work = Path(args.golden), Path(args.work)
    clean = open_store(_mutate(golden, work, {"file": "db", "op": "none"}))
    content, report = store_content(clean), clean.verify()
    clean.close()
    _say("READY", f"{int(report.ok)} {report.head} {content}")
    for line in sys.stdin:
        if line.strip() == "END":
            break
        mutation = json.loads(line)
        result = probe(_mutate(golden, work, mutation), content)
        # on a fresh copy: the probe's own reads must not hide what the readers meet
        result["reader_crashes"] = readers_probe(_mutate(golden, work, mutation))
        _say("RES", json.dumps(result))
    _say("DONE")
    return 0


# -- project (a non-idempotent projection, killed mid-batch) ---------------------------


class TallyProjection(Projection):
    """Per stream: how many heartbeats and the sum of their ``seq``.

    Deliberately not idempotent (``events = events + 1``): applying a batch twice
    shows, so only an engine that commits rows and checkpoint together survives
    kills mid-batch.
    """

    name = "fault_tally"
    version = 1
    handles = (Heartbeat,)
    pause_s = 0.0

    def define(self, tables: TableSet) -> None:
        tables.add(
            "tally",
            sa.Column("stream", sa.String(256), primary_key=True),
            sa.Column("events", sa.Integer, nullable=False),
            sa.Column("total", sa.BigInteger, nullable=False),
        )

    def apply(self, tx: Tx, item: Typed[Any]) -> None:
        if self.pause_s:
            time.sleep(self.pause_s)
        seq = int(item.event.seq)
        row = tx.get("tally", stream=item.record.stream)
        if row is None:
            tx.insert("tally", stream=item.record.stream, events=1, total=seq)
        else:
            tx.update(
                "tally",
                {"stream": item.record.stream},
                events=row.events + 1,
                total=row.total + seq,
            )


def tally_fold(events: Sequence[RecordedEvent], upto: int) -> dict[str, tuple[int, int]]:
    """The tally a plain fold of the log up to ``upto`` gives: stream -> (events, total)."""
    import json

    out: dict[str, tuple[int, int]] = {}
    for e in events:
        if e.position <= upto and e.type == Heartbeat.TYPE:
            count, total = out.get(e.stream, (0, 0))
            out[e.stream] = (count + 1, total + int(json.loads(e.data)["seq"]))
    return out


def tally_state(engine: ProjectionEngine) -> tuple[int, dict[str, tuple[int, int]]]:
    """The projection's checkpoint position and its rows, read in one transaction."""
    with engine.read(TallyProjection.name) as tx:
        cp = cps.load(tx.conn, TallyProjection.name)
        assert cp is not None
        rows = tx.conn.execute(sa.select(tx.table("tally"))).all()
    return cp.position, {r.stream: (r.events, r.total) for r in rows}


class _LoudEngine(ProjectionEngine):
    """Says when a batch begins and commits; ``split`` is the broken two-transaction variant."""

    split = False

    def _apply_batch(
        self,
        proj: Projection,
        cp: Checkpoint,
        records: Sequence[RecordedEvent],
        txs: dict[str, Tx] | None = None,
    ) -> Checkpoint:
        _say("BEGIN", str(records[0].position))
        if not self.split:
            new = super()._apply_batch(proj, cp, records, txs)
            _say("COMMIT", str(new.position))
            return new
        with self._write() as conn:  # the bug: rows in one transaction ...
            tx = Tx(conn, self.tables(proj, cp.version, cp.generation))
            for record in records:
                if record.type in proj.type_names():
                    from labledger.events.typed import decode_record

                    proj.apply(tx, decode_record(record))
            tx.flush()
        _say("ROWS", str(records[-1].position))
        time.sleep(0.3)
        new = Checkpoint(
            name=cp.name,
            version=cp.version,
            generation=cp.generation,
            position=records[-1].position,
            events_applied=cp.events_applied,
            updated_at_us=cp.updated_at_us,
        )
        with self._write() as conn:  # ... and the checkpoint in another
            cps.advance(conn, cp, new)
        _say("COMMIT", str(new.position))
        return new


def _project(args: argparse.Namespace) -> int:
    store = open_store(args.url)
    projection = TallyProjection()
    projection.pause_s = args.pause_ms / 1000
    engine = _LoudEngine(store, [projection], batch_size=args.batch)
    engine.split = args.broken == "split-txn"
    _say("READY")
    try:
        while True:
            cp = engine.catch_up(projection.name)
            if cp.position >= store.head():
                _say("IDLE", str(cp.position))
                time.sleep(0.05)
    except LabledgerError as exc:
        _say("ERROR", _describe(exc))
        return 1


# -- the parent side --------------------------------------------------------------------


class FaultWorker(Worker):
    """A :class:`Worker` running ``python -m labledger.testing.faults VERB URL ...``."""

    def __init__(self, verb: str, url: str, *options: str, name: str = "") -> None:
        import queue
        from typing import IO

        self.name = name or verb
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labledger.testing.faults", verb, url, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=worker_env(),
            text=True,
            bufsize=1,
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def pending_lines(self) -> list[str]:
        """Every complete line already received, without waiting (for live checks)."""
        import queue

        got: list[str] = []
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return got
            if line is None:
                self._queue.put(None)  # keep the end-of-output mark for drain()
                return got
            self.lines.append(line)
            got.append(line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labledger.testing.faults")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("writer")
    p.add_argument("url")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--streams", type=int, default=5)
    p.add_argument("--retry", action="append", default=[], help="'STREAM SEED N IDS'")
    p.add_argument("--persist", action="store_true")
    p.add_argument("--wal-autocheckpoint", type=int, default=0)
    p.add_argument("--broken", choices=BROKEN, default="")
    p = sub.add_parser("fill")
    p.add_argument("url")
    p.add_argument("--limit", type=int, required=True, help="RLIMIT_FSIZE in bytes")
    p.add_argument("--failures", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--broken", choices=BROKEN, default="")
    p = sub.add_parser("flips")
    p.add_argument("golden", help="directory holding golden.db (+ -wal, .anchor, .anchor.key)")
    p.add_argument("work", help="scratch directory for the damaged copies")
    p.add_argument("--broken", choices=BROKEN, default="")
    p = sub.add_parser("project")
    p.add_argument("url")
    p.add_argument("--batch", type=int, default=40)
    p.add_argument("--pause-ms", type=float, default=1.0)
    p.add_argument("--broken", choices=BROKEN, default="")
    args = parser.parse_args(argv)
    verbs = {"writer": _writer, "fill": _fill, "flips": _flips, "project": _project}
    return verbs[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
