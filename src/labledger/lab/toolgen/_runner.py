"""The evaluation child: run one generated tool on tests, oracle inputs and benchmarks.

Executed as a script (``python -I -S _runner.py``) by ``evaluate.py`` under the
epoch's budgets (a wall-clock timeout and ``RLIMIT_AS``); uses the standard
library only. Reads one JSON job on stdin, writes one JSON report on stdout.
The tool's output is compared after a JSON round trip (tuples become lists).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def _load(code: str, function: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "generated_tool"}
    exec(compile(code, "tool.py", "exec"), namespace)
    return namespace[function]


def _call(fn: Any, args: list[Any]) -> tuple[bool, Any]:
    try:
        return True, json.loads(json.dumps(fn(*json.loads(json.dumps(args)))))
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _timed(fn: Any, inputs: list[list[Any]], runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        copies = json.loads(json.dumps(inputs))  # fresh inputs, copied outside the clock
        start = time.perf_counter()
        for args in copies:
            fn(*args)
        timings.append((time.perf_counter() - start) * 1000.0)
    return timings


def main() -> None:
    job = json.load(sys.stdin)
    report: dict[str, Any] = {"loaded": False, "tests": [], "robust": [], "timings_ms": []}
    try:
        fn = _load(job["code"], job["function"])
    except Exception as exc:
        report["error"] = f"load: {type(exc).__name__}: {exc}"
        print(json.dumps(report))
        return
    report["loaded"] = True
    for case in job["tests"]:
        ok, got = _call(fn, case["args"])
        report["tests"].append(ok and got == case["expected"])
    if job["robust"]:
        reference = _load(job["reference"], job["function"])
        for args in job["robust"]:
            ok, got = _call(fn, args)
            report["robust"].append(ok and got == _call(reference, args)[1])
    if job["timed_runs"]:
        try:
            report["timings_ms"] = _timed(fn, job["bench"], job["timed_runs"])
        except Exception as exc:
            report["error"] = f"benchmark: {type(exc).__name__}: {exc}"
    print(json.dumps(report))


if __name__ == "__main__":
    main()
