"""D-REAM cpu workload: serve fixed requests — hash one 64 KiB message — in ``threads`` threads.

Genes: ``threads`` (concurrent requests), ``chunk_kb`` (the message is fed to
the hash in pieces of this size: small pieces pay Python overhead per call and
hold the GIL, since hashlib releases it only for inputs of 2 KiB and more),
``algo`` (a hashlib name). The request is the same for every genome, so
``p95_ms`` — the 95th percentile latency of one request, taken over every
request of the trial — compares across genomes. perf: MiB/s hashed over the
busy time (all threads); errors: requests whose digest differs from the first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time

from _common import finish, p95  # type: ignore[import-not-found]  # run by path: its dir is on sys.path

REQUEST_KB = 64


def args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    for name in ("--genome", "--mode", "--workdir"):
        p.add_argument(name, default="{}" if name == "--genome" else "")
    p.add_argument("--budget-ms", type=float, default=200.0)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def phases(budget_ms: float, mode: str) -> list[tuple[bool, float]]:
    """(busy, seconds) phases: one busy phase, or busy/quiet alternating in quarters."""
    total = budget_ms / 1000
    return [(True, total / 4), (False, total / 4)] * 2 if mode == "alternate" else [(True, total)]


def serve(algo: str, pieces: list[bytes]) -> bytes:
    """One request: the digest of the message, fed piece by piece."""
    h = hashlib.new(algo)
    for piece in pieces:
        h.update(piece)
    return h.digest()


def work(
    algo: str, pieces: list[bytes], until: float, expected: bytes, out: list[list[float]]
) -> None:
    latencies: list[float] = []
    errors = 0.0
    while time.perf_counter() < until:
        t0 = time.perf_counter()
        digest = serve(algo, pieces)
        latencies.append((time.perf_counter() - t0) * 1000)
        errors += digest != expected
    out.append([errors, *latencies])


def main() -> None:
    a = args()
    genome = json.loads(a.genome)
    threads, algo = int(genome.get("threads", 1)), str(genome.get("algo", "sha256"))
    message = bytes(range(256)) * (REQUEST_KB * 4)
    chunk = min(REQUEST_KB, int(genome.get("chunk_kb", 64))) * 1024
    pieces = [message[at : at + chunk] for at in range(0, len(message), chunk)]
    expected = hashlib.new(algo, message).digest()
    results: list[list[float]] = []
    busy = 0.0
    for is_busy, seconds in phases(a.budget_ms, a.mode):
        if not is_busy:
            time.sleep(seconds)
            continue
        start = time.perf_counter()
        pool = [
            threading.Thread(target=work, args=(algo, pieces, start + seconds, expected, results))
            for _ in range(threads)
        ]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        busy += time.perf_counter() - start
    latencies = [x for r in results for x in r[1:]]
    kpis = {
        "perf": len(latencies) * len(message) / 2**20 / busy,
        "p95_ms": p95(latencies),
        "errors": int(sum(r[0] for r in results)),
        "oom": 0,
    }
    finish(kpis, len(latencies))


if __name__ == "__main__":
    main()
