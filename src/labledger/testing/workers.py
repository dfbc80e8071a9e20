"""Worker processes for the concurrency and crash tests, and the parent's side of them.

Run a worker as ``python -m labledger.testing.workers VERB URL [options]``:

``race``
    Reads a stream's version and appends one event with exactly that expected
    version, ``--rounds`` times. With ``--lockstep`` every round waits for the
    parent twice (before reading, and between reading and appending), so all
    workers read the same version and exactly one of them can win the round.
``write``
    Appends ``--batches`` small batches (1-3 events) to random streams with
    expected version ANY, as fast as it can.
``crash``
    Appends batches of 1-5 events (a few streams, ANY) forever, printing
    ``TRY <ids> <stream> <seed> <n>`` before each append and
    ``ACK <ids> <first_pos> <last_pos>`` after it returned; the parent kills it
    with SIGKILL. With ``--retry`` it first appends again the batch a killed
    worker had tried without acknowledging (``RETRY <ids> <first_pos>
    <last_pos> <already_appended 0|1>``).
``init``
    Runs ``labledger --db URL init`` once the parent says go.

Protocol: one line per message on stdout, ``TAG payload``. Every worker says
``READY`` once its store is open (or, for ``init``, once it is imported) and
then waits for a ``GO`` line on stdin; ids are comma-separated. Errors a
worker can report are reported as lines (never hidden in a traceback) so that
the parent can name what leaked out of the store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import msgspec

from labledger import NO_STREAM, EventStore, NewEvent, WrongExpectedVersion, open_store
from labledger.store import ANY, ExpectedVersion

GUARD_S = 180.0
"""How long the parent waits for one line before declaring a worker hung.

A guard against a hung test run only: no assertion depends on timing.
"""

_encode = msgspec.json.Encoder().encode


# -- shared by worker processes and in-process threads --------------------------------


class RaceOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one racer saw in one round."""

    worker: str
    round: int
    read_version: int
    kind: str  # "ok" | "conflict" | "error"
    event_id: str | None = None
    position: int | None = None
    version: int | None = None
    already_appended: bool = False
    actual: int | None = None
    error: str | None = None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}".replace("\n", " ")


def race_read(store: EventStore, stream: str) -> int | str:
    """The stream's version, or a description of the error that reading it raised."""
    try:
        return store.stream_version(stream)
    except Exception as exc:
        return _describe(exc)


def race_append(
    store: EventStore, stream: str, worker: str, round: int, read: int | str
) -> RaceOutcome:
    """Append one event expecting ``read`` (the version read earlier); never raises."""
    if isinstance(read, str):
        return RaceOutcome(worker=worker, round=round, read_version=-2, kind="error", error=read)
    expected: ExpectedVersion = NO_STREAM if read < 0 else read
    event = NewEvent.from_json("test.Raced", {"worker": worker, "round": round})
    try:
        result = store.append(stream, [event], expected)
    except WrongExpectedVersion as exc:
        return RaceOutcome(
            worker=worker, round=round, read_version=read, kind="conflict", actual=exc.actual
        )
    except Exception as exc:
        return RaceOutcome(
            worker=worker, round=round, read_version=read, kind="error", error=_describe(exc)
        )
    return RaceOutcome(
        worker=worker,
        round=round,
        read_version=read,
        kind="ok",
        event_id=event.id,
        position=result.first_position,
        version=result.first_version,
        already_appended=result.already_appended,
    )


def random_event(rng: random.Random, type: str, **data: object) -> NewEvent:
    """An event whose id comes from ``rng`` (reproducible from the seed)."""
    return NewEvent.from_json(type, dict(data), id=uuid.UUID(int=rng.getrandbits(128), version=4))


# -- the worker side -----------------------------------------------------------------


def _say(tag: str, payload: str = "") -> None:
    sys.stdout.write(f"{tag} {payload}\n" if payload else f"{tag}\n")
    sys.stdout.flush()


def _wait_go() -> None:
    line = sys.stdin.readline()
    if line.strip() != "GO":
        raise SystemExit(f"expected GO from the parent, got {line!r}")


def _race(args: argparse.Namespace) -> int:
    with open_store(args.url) as store:
        _say("READY")
        _wait_go()
        for r in range(args.rounds):
            if args.lockstep and r > 0:
                _wait_go()
            read = race_read(store, args.stream)
            if args.lockstep:
                _say("READ", str(read) if isinstance(read, int) else "-2")
                _wait_go()
            outcome = race_append(store, args.stream, args.worker, r, read)
            _say("OUT", _encode(outcome).decode())
        _say("DONE")
    return 0


def _write(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    written = 0
    with open_store(args.url) as store:
        _say("READY")
        _wait_go()
        for b in range(args.batches):
            stream = f"s{rng.randrange(args.streams)}"
            events = [
                random_event(rng, "test.Written", worker=args.worker, batch=b, i=i)
                for i in range(rng.randint(1, 3))
            ]
            try:
                store.append(stream, events, ANY)
            except Exception as exc:
                _say("ERROR", _describe(exc))
                return 1
            written += len(events)
        _say("DONE", str(written))
    return 0


def crash_event(seed: int, n: int, i: int, id: str) -> NewEvent:
    """Event ``i`` of batch ``n`` of the crash worker seeded ``seed``: rebuilt for a retry."""
    return NewEvent.from_json("test.Crashy", {"seed": seed, "n": n, "i": i}, id=id)


def _crash(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with open_store(args.url) as store:
        _say("READY")
        if args.retry:
            # The batch an earlier worker was killed in the middle of: same ids, same content.
            stream, seed, n, ids = args.retry.split(" ")
            events = [crash_event(int(seed), int(n), i, id) for i, id in enumerate(ids.split(","))]
            try:
                result = store.append(stream, events, ANY)
            except Exception as exc:
                _say("ERROR", _describe(exc))
                return 1
            _say(
                "RETRY",
                f"{ids} {result.first_position} {result.last_position} "
                f"{int(result.already_appended)}",
            )
        n = 0
        while True:
            stream = f"c{rng.randrange(args.streams)}"
            events = [
                crash_event(args.seed, n, i, str(uuid.UUID(int=rng.getrandbits(128), version=4)))
                for i in range(rng.randint(1, 5))
            ]
            ids = ",".join(e.id for e in events)
            _say("TRY", f"{ids} {stream} {args.seed} {n}")
            try:
                result = store.append(stream, events, ANY)
            except Exception as exc:
                _say("ERROR", _describe(exc))
                return 1
            _say("ACK", f"{ids} {result.first_position} {result.last_position}")
            n += 1


def _init(args: argparse.Namespace) -> int:
    from labledger.cli.main import run

    _say("READY")
    _wait_go()
    code = run(["--db", args.url, "init"])
    _say("EXIT", str(code))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labledger.testing.workers")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("race")
    p.add_argument("url")
    p.add_argument("--stream", default="race")
    p.add_argument("--worker", default="w")
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--lockstep", action="store_true")
    p = sub.add_parser("write")
    p.add_argument("url")
    p.add_argument("--worker", default="w")
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--streams", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("crash")
    p.add_argument("url")
    p.add_argument("--streams", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retry", default="", help="'STREAM SEED N IDS' of a batch to append again")
    p = sub.add_parser("init")
    p.add_argument("url")
    args = parser.parse_args(argv)
    verbs = {"race": _race, "write": _write, "crash": _crash, "init": _init}
    return verbs[args.verb](args)


# -- the parent side -------------------------------------------------------------------


class WorkerFailed(AssertionError):
    """A worker said something unexpected, died, or hung."""


def worker_env() -> dict[str, str]:
    """The environment for a worker: this process's, with labledger importable."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Worker:
    """One worker process; its stdout lines are pumped into a queue by a thread."""

    def __init__(self, verb: str, url: str, *options: str, name: str = "") -> None:
        self.name = name or verb
        self.lines: list[str] = []  # every line read, complete or not (the last may be partial)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labledger.testing.workers", verb, url, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=worker_env(),
            text=True,
            bufsize=1,
        )
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _fail(self, why: str) -> WorkerFailed:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        return WorkerFailed(
            f"worker {self.name}: {why}\n--- stdout (last lines) ---\n"
            + "".join(self.lines[-20:])
            + f"\n--- stderr (exit {self.proc.returncode}) ---\n{self.stderr()}"
        )

    def next_line(self) -> str | None:
        """The next line (with its newline when complete), or None at end of output."""
        try:
            line = self._queue.get(timeout=GUARD_S)
        except queue.Empty:
            raise self._fail(f"no output for {GUARD_S:.0f}s: hung") from None
        if line is not None:
            self.lines.append(line)
        return line

    def expect(self, tag: str) -> str:
        """The payload of the next line, which must carry ``tag``."""
        line = self.next_line()
        if line is None:
            raise self._fail(f"ended while {tag} was expected")
        got, _, payload = line.rstrip("\n").partition(" ")
        if got != tag:
            raise self._fail(f"said {line.rstrip()!r} while {tag} was expected")
        return payload

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._fail(f"gone while sending {line!r}") from None

    def go(self) -> None:
        self.send("GO")

    def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def drain(self) -> list[str]:
        """Every line left until the end of output (the process has ended or will)."""
        rest = []
        while (line := self.next_line()) is not None:
            rest.append(line)
        return rest

    def finish(self) -> int:
        """Wait for a clean exit; raises unless the exit code is 0."""
        try:
            code = self.proc.wait(timeout=GUARD_S)
        except subprocess.TimeoutExpired:
            raise self._fail(f"did not exit within {GUARD_S:.0f}s") from None
        self.drain()
        if code != 0:
            raise self._fail(f"exited with {code}")
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._pump.join()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._stderr.close()

    def __enter__(self) -> Worker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
