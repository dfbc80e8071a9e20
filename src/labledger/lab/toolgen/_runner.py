"""The evaluation child: run one generated tool on tests, oracle inputs and benchmarks.

Executed as a script (``python -S -s -P _runner.py``) by ``evaluate.py`` under the
epoch's budgets (a wall-clock timeout and ``RLIMIT_AS``); uses the standard
library only. Reads one JSON job on stdin and writes JSON lines on stdout: first
the tests and robustness checks, flushed, then the benchmark (the tool and the
spec's reference implementation timed alternately — up to ``timed_runs`` pairs,
fewer, but at least 3, once ``bench_deadline_s`` has passed — then the tool's
peak memory). A tool too slow
for the timeout therefore still reports its tests: being slow is not being wrong.
The tool's output is compared after a JSON round trip (tuples become lists).
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from typing import Any

TOOL_FILE = "tool.py"


def _load(code: str, function: str) -> Any:
    namespace: dict[str, Any] = {"__name__": "generated_tool"}
    exec(compile(code, TOOL_FILE, "exec"), namespace)
    return namespace[function]


def _tool_line(exc: BaseException) -> int | None:
    """The line of ``tool.py`` where ``exc`` was raised (the innermost such frame)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TOOL_FILE:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _call(fn: Any, args: list[Any]) -> tuple[bool, Any, int | None]:
    try:
        return True, json.loads(json.dumps(fn(*json.loads(json.dumps(args))))), None
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}", _tool_line(exc)


def _tests(fn: Any, cases: list[dict[str, Any]]) -> tuple[list[bool], list[dict[str, Any]]]:
    passed, failures = [], []
    for n, case in enumerate(cases):
        ok, got, line = _call(fn, case["args"])
        passed.append(ok and got == case["expected"])
        if not passed[-1]:
            failures.append(
                {
                    "test": n,
                    "raised": not ok,
                    "got": got,
                    "expected": case["expected"],
                    "line": line,
                }
            )
    return passed, failures


def _once(fn: Any, inputs: list[list[Any]]) -> float:
    copies = json.loads(json.dumps(inputs))  # fresh inputs, copied outside the clock
    start = time.perf_counter()
    for args in copies:
        fn(*args)
    return (time.perf_counter() - start) * 1000.0


MIN_TIMED_RUNS = 3


def _timed(
    fn: Any, reference: Any, inputs: list[list[Any]], runs: int, deadline: float
) -> dict[str, Any]:
    """Time the tool and the reference alternately, run by run, in this one process:
    a load spike on the machine then slows both, and their ratio stays fair. Past the
    ``deadline`` (``perf_counter`` seconds) and at least 3 pairs in, stop: a slow tool
    is then measured on fewer runs instead of killed at the timeout unmeasured."""
    tool, ref = [], []
    for _ in range(runs):
        ref.append(_once(reference, inputs))
        tool.append(_once(fn, inputs))
        if len(tool) >= MIN_TIMED_RUNS and time.perf_counter() > deadline:
            break
    return {"timings_ms": tool, "reference_ms": ref}


def _peak_kib(fn: Any, inputs: list[list[Any]]) -> float:
    """Peak traced allocation of one benchmark run (untimed: tracing slows the tool)."""
    copies = json.loads(json.dumps(inputs))
    tracemalloc.start()
    try:
        for args in copies:
            fn(*args)
        return tracemalloc.get_traced_memory()[1] / 1024.0
    finally:
        tracemalloc.stop()


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def main() -> None:
    started = time.perf_counter()
    job = json.load(sys.stdin)
    report: dict[str, Any] = {"loaded": False, "tests": [], "failures": [], "robust": []}
    try:
        fn = _load(job["code"], job["function"])
    except Exception as exc:
        report["error"] = f"load: {type(exc).__name__}: {exc}"
        _emit(report)
        return
    report["loaded"] = True
    report["tests"], report["failures"] = _tests(fn, job["tests"])
    reference = _load(job["reference"], job["function"])
    if job["robust"]:
        for args in job["robust"]:
            ok, got, _ = _call(fn, args)
            report["robust"].append(ok and got == _call(reference, args)[1])
    _emit(report)
    if job["timed_runs"]:
        try:
            deadline = started + job["bench_deadline_s"]
            timings = _timed(fn, reference, job["bench"], job["timed_runs"], deadline)
            _emit(timings)  # before the traced run: a timeout there keeps the timings
            _emit({"peak_kib": _peak_kib(fn, job["bench"])})
        except Exception as exc:
            _emit({"error": f"benchmark: {type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    main()
