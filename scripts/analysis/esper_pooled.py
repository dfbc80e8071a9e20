"""Paired metric differences of one policy against others, pooled over several evaluations (issue #16).

    PYTHONPATH=src python scripts/analysis/esper_pooled.py sqlite:///esper.db learned:SHA \\
        heuristic,noop,random eval:100-129 confirm:1000-1069 third:1070-1199

Each TAG:FIRST-LAST names the runs of one ``esper evaluate --tag TAG`` (spirals_mix, 20 epochs,
window end). The CI is ``esper evaluate``'s own (``stats.bootstrap_ci``, seed 0, 4,000 resamples).
"""

import sys

from labledger.lab.esper import collect, stats
from labledger.lab.esper.evaluate import score_run
from labledger.ledger import open_ledger
from labledger.security import KeyRing

url, policy, others = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
store = open_ledger(url, keyring=KeyRing({"lab": b"k" * 32}), strict=False)
spec = collect.EpisodeSpec(task="spirals_mix", epochs=20, window=20)
rows: list[dict[str, float]] = []
for part in sys.argv[4:]:
    tag, seeds = part.split(":")
    first, last = (int(s) for s in seeds.split("-"))
    for seed in range(first, last + 1):
        rid = lambda p: collect.run_id(spec, tag, p, seed)  # noqa: E731
        rows.append({p: score_run(store, spec, p, seed, rid(p)).metric for p in [policy, *others]})
for other in others:
    d = [r[policy] - r[other] for r in rows]
    low, high = stats.bootstrap_ci(d, seed=0)
    print(f"{policy[:20]} - {other}: n={len(d)} {stats.mean(d):+.4f} [{low:+.4f}, {high:+.4f}]")
