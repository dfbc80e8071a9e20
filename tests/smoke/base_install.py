"""Smoke test of ``pip install labledger`` with no extras (issue #12).

Run by ``make smoke-base`` (and so by CI) with the interpreter of a venv that
has only the base lock installed: every verb either works or exits 2 naming
the extra to install, and nothing prints a traceback.

    python tests/smoke/base_install.py PATH/TO/labledger
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

WORKS = 0
NEEDS_EXTRA = 2
# Verbs that need no extra, on the log `labledger lab` leaves.
PLAIN_VERBS = (
    "head",
    "read-all --limit 3",
    "streams --prefix run-",
    "verify",
    "runs",
    "doctor",
    "project status",
    "project run",
    "project hash runs",
    "dream baselines",
    "toolgen leaderboard",
    "toolgen rates",
    "toolgen epochs",
    "esper seeds",
    "esper nonces",
    "esper weatherlight",
    "audit --rejected",
    "catalog",
    "keys list",
    "backup copy.db",
    "export --out all.llx",
    "demo",
)


def main(labledger: str) -> int:
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="labledger-smoke-") as tmp:
        cwd = Path(tmp)

        def check(argv: list[str], code: int, extra: str | None = None, shows: str = "") -> str:
            proc = subprocess.run(
                [labledger, *argv], cwd=cwd, capture_output=True, text=True, timeout=300
            )
            both = proc.stdout + proc.stderr
            label = "labledger " + " ".join(argv)
            if "Traceback" in both:
                failures.append(f"{label}: printed a traceback:\n{proc.stderr[-2000:]}")
            if proc.returncode != code:
                failures.append(f"{label}: exit {proc.returncode}, wanted {code}:\n{both[-800:]}")
            if extra is not None and f"pip install 'labledger[{extra}]'" not in proc.stderr:
                failures.append(f"{label}: does not name the [{extra}] extra:\n{proc.stderr}")
            if shows and shows not in both:
                failures.append(f"{label}: does not show {shows!r}:\n{both[-800:]}")
            print(f"{proc.returncode}  {label}", flush=True)
            return proc.stdout

        check(["--version"], WORKS, shows="labledger ")
        lab = check(["lab"], WORKS, shows="Esper: skipped")
        for section in ("D-REAM", "ToolGen", "Leaderboard", "Integrity"):
            if section not in lab:
                failures.append(f"labledger lab: no {section} section")
        packs = check(["dream", "report", "--json"], WORKS)
        for line in packs.splitlines():
            json.loads(line)
        check(["dream", "report"], WORKS, extra="plot")
        check(["dream", "report", "--out", "d.png"], NEEDS_EXTRA, extra="plot")
        check(["toolgen", "plot", "--out", "t.png"], NEEDS_EXTRA, extra="plot")
        check(["esper", "plot", "no-such-run", "--out", "e.png"], NEEDS_EXTRA, extra="plot")
        check(["esper", "train", "--epochs", "1"], NEEDS_EXTRA, extra="ml")
        check(["esper", "simic"], NEEDS_EXTRA, extra="ml")
        check(["esper", "training-set", "export", "--out", "t.pt"], NEEDS_EXTRA, extra="ml")
        check(["serve"], NEEDS_EXTRA, extra="api")
        check(["serve", "--print-token"], NEEDS_EXTRA, extra="api")
        parquet = ["export-parquet", "--type", "dream.TrialRecorded", "--out", "pq"]
        check(parquet, NEEDS_EXTRA, extra="api")
        pg = "postgresql://postgres@127.0.0.1:5432/postgres"
        check(["--db", pg, "head"], NEEDS_EXTRA, extra="postgres")
        run_id = json.loads(check(["runs"], WORKS).splitlines()[0])["run_id"]
        for verb in PLAIN_VERBS:
            check(verb.split(), WORKS)
        check(["replay", run_id], WORKS)
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"base install smoke: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(str(Path(sys.argv[1]).resolve())))
