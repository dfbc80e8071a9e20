"""CPU of one append flush of 32 events in its two shapes (issue #19, session 6).

    python benchmarks/flush_shapes.py URL [--flushes 60] [--rounds 2]

One ``append_many`` of 32 events on one stream (a batch), and one of 32 streams
with one event each (what a group-commit flush of 32 writers sends), alternating.
Prints wall and process CPU milliseconds per flush. Fresh packet ids per run, so
the same store can be used again.
"""

from __future__ import annotations

import argparse
import time

from perf_payload import PacketFactory
from perf_subjects import LabledgerSubject

from labledger import NO_STREAM, StreamAppend


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url", help="a store URL (initialised here if empty)")
    parser.add_argument("--flushes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    subject = LabledgerSubject(args.url)
    factory = PacketFactory(time.time_ns())
    run = time.time_ns()
    try:
        for r in range(args.rounds):
            for shape in ("one stream", "32 streams"):
                flushes = []
                for k in range(args.flushes):
                    events = subject.native(factory.packets(32), "x")
                    tag = f"shape{run}/{r}/{k}"
                    if shape == "one stream":
                        flushes.append([StreamAppend(tag, events, NO_STREAM)])
                    else:
                        flushes.append(
                            [
                                StreamAppend(f"{tag}/w{i}", [e], NO_STREAM)
                                for i, e in enumerate(events)
                            ]
                        )
                wall, cpu = time.perf_counter(), time.process_time()
                for parts in flushes:
                    subject.store.append_many(parts)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                print(
                    f"{shape:<10}  wall {wall / args.flushes * 1e3:.2f} ms"
                    f"  CPU {cpu / args.flushes * 1e3:.2f} ms per flush of 32 events"
                )
    finally:
        subject.close()


if __name__ == "__main__":
    main()
