"""What the group committer's hand-off alone costs, with a commit that does nothing (issue #19).

    python benchmarks/group_commit_floor.py [--writers 32] [--requests 50] [--commit-ms 0.5]
        [--rounds 3]

``--writers`` threads each submit ``--requests`` empty requests to a
``GroupCommitter`` whose commit sleeps ``--commit-ms`` (the GIL released, as
during an fsync) and plans nothing. No SQL, no validation: what remains is
queueing, the leader's linger, and each writer's wait and wake under the GIL.
Prints requests/s and process CPU µs per request: the ceiling of append_32_writers
on this machine, whatever the store does.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Sequence

from labledger.store.group_commit import GroupCommitter
from labledger.store.planner import Outcome, Request


def run(writers: int, requests: int, commit_s: float) -> tuple[float, float, int]:
    def commit(batch: Sequence[Request]) -> list[Outcome]:
        time.sleep(commit_s)
        return [[] for _ in batch]

    group = GroupCommitter(commit)
    barrier = threading.Barrier(writers + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(requests):
            group.submit([])

    threads = [threading.Thread(target=work) for _ in range(writers)]
    for t in threads:
        t.start()
    barrier.wait()
    cpu, start = time.process_time(), time.perf_counter()
    for t in threads:
        t.join()
    n = writers * requests
    rate = n / (time.perf_counter() - start)
    return rate, (time.process_time() - cpu) / n * 1e6, sum(group.flush_sizes.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--writers", type=int, default=32)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--commit-ms", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    got = [run(args.writers, args.requests, args.commit_ms / 1000) for _ in range(args.rounds)]
    for i, (rate, cpu, flushes) in enumerate(got, 1):
        print(f"round {i}: {rate:8,.0f} requests/s  {cpu:5.1f} CPU µs/request  {flushes} flushes")
    print(
        f"median: {statistics.median(r for r, _, _ in got):,.0f} requests/s, "
        f"{statistics.median(c for _, c, _ in got):.1f} CPU µs/request "
        f"({args.writers} writers × {args.requests}, commit {args.commit_ms} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
