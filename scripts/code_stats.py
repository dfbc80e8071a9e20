"""Structure figures of ``src/labledger`` (issue #13): modules, function lengths, and
the modules one ``labledger append`` crosses.

    python scripts/code_stats.py            # module count, median/p90 function length
    python scripts/code_stats.py --append   # + the modules a CLI append runs code in

Function length is the number of source lines from ``def`` to the last line of
its body (nested functions count on their own too).
"""

from __future__ import annotations

import argparse
import ast
import io
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "labledger"


def function_lengths(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]


def modules_crossed_by_append() -> list[str]:
    """Run ``labledger append`` in-process and list the labledger modules that ran code."""
    from labledger.cli.main import run

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/trace.db"
        assert run(["--db", db, "init"]) == 0
        line = b'{"type": "lab.Note", "data": {"text": "warm"}}\n'
        _with_stdin(line, lambda: run(["--db", db, "append", "warm"]))  # imports done
        seen: set[str] = set()

        def profile(frame: object, event: str, arg: object) -> None:
            if event == "call":
                name = frame.f_code.co_filename  # type: ignore[attr-defined]
                if "/labledger/" in name and "/site-packages/" not in name.split("src/")[0]:
                    seen.add(name.split("/labledger/", 1)[1])

        sys.setprofile(profile)
        try:
            _with_stdin(line, lambda: run(["--db", db, "append", "notes"]))
        finally:
            sys.setprofile(None)
    return sorted(seen)


def _with_stdin(data: bytes, call: object) -> None:
    saved, out = sys.stdin, sys.stdout
    sys.stdin = io.TextIOWrapper(io.BytesIO(data))
    sys.stdout = io.TextIOWrapper(io.BytesIO())
    try:
        call()  # type: ignore[operator]
    finally:
        sys.stdin, sys.stdout = saved, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true", help="trace one CLI append")
    args = parser.parse_args()
    files = sorted(SRC.rglob("*.py"))
    lengths = [n for f in files for n in function_lengths(f)]
    parts = [f.relative_to(SRC).parts for f in files]
    per_package = Counter(p[0] for p in parts if len(p) > 1)
    packages = ", ".join(f"{k} {v}" for k, v in sorted(per_package.items()))
    print(f"modules: {len(files)} ({packages})")
    p90 = statistics.quantiles(lengths, n=10)[-1]
    print(
        f"functions: {len(lengths)}; median length {statistics.median(lengths):g} lines, "
        f"p90 {p90:g}, over 40 lines: {sum(n > 40 for n in lengths)}"
    )
    if args.append:
        crossed = modules_crossed_by_append()
        store = [m for m in crossed if m.startswith("store/")]
        print(f"one CLI append crosses {len(crossed)} modules, {len(store)} of them in store/:")
        for m in crossed:
            print(f"  {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
