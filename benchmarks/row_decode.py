"""The cost of the damaged-row check in ``store.schema.to_recorded`` (issue #18).

Unit of work: one stored row (13 columns, a typical heartbeat) turned into a
``RecordedEvent``. Compares this tree's ``to_recorded`` with another version of
``schema.py`` (e.g. main's), interleaved, best and median of 7 runs.

    git show main:src/labledger/store/schema.py > /tmp/schema_main.py
    .venv/bin/python benchmarks/row_decode.py /tmp/schema_main.py
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import timeit

from labledger.store import schema

ROW = (
    12345,
    "run-abc",
    7,
    "0b7e0a3c-1111-2222-3333-444455556666",
    "run.Heartbeat",
    1,
    1_764_650_000_000_000,
    None,
    "c",
    "run-abc",
    "lab",
    b'{"seq":1}',
    b"{}",
)
N = 200_000


def main() -> None:
    spec = importlib.util.spec_from_file_location("other_schema", sys.argv[1])
    assert spec is not None and spec.loader is not None
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    times: dict[str, list[float]] = {"other": [], "this tree": []}
    for _ in range(7):
        for name, module in (("other", other), ("this tree", schema)):
            decode = module.to_recorded
            times[name].append(timeit.timeit(lambda d=decode: d(ROW), number=N) / N * 1e9)
    for name, xs in times.items():
        print(f"{name}: {min(xs):.0f} ns/row best, {statistics.median(xs):.0f} median (7 x {N})")


if __name__ == "__main__":
    main()
