"""Group-commit flush sizes of N concurrent durable writers (issue #19).

    python benchmarks/group_commit_sizes.py [URL] [--writers 32] [--events 100]

Each writer appends its packets one per transaction to its own stream, as in
perf_bench's ``append_32_writers``, but long enough for the steady state to
show. Prints events/s and the distribution of requests per flush
(``store.group.flush_sizes``). Default URL: a fresh SQLite file.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path

from perf_bench import concurrent_writers
from perf_payload import PacketFactory
from perf_subjects import LabledgerSubject


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url", nargs="?", default=None, help="an initialised or empty store")
    parser.add_argument("--writers", type=int, default=32, help="concurrent writers")
    parser.add_argument("--events", type=int, default=100, help="events per writer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'flush.db'}"
        subject = LabledgerSubject(url)
        factory = PacketFactory(seed=5)
        jobs = [factory.packets(args.events) for _ in range(args.writers)]
        before = Counter(subject.store.group.flush_sizes)
        rate = concurrent_writers(subject, "sizes", jobs)
        sizes = Counter(subject.store.group.flush_sizes) - before
        subject.close()
    print(f"{args.writers} writers × {args.events} events: {rate:,.0f} events/s")
    shown = ", ".join(f"{k}×{v}" for k, v in sorted(sizes.items()))
    print(f"requests per flush × flushes: {shown}")


if __name__ == "__main__":
    main()
