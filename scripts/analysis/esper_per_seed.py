"""Per-difficulty means of evaluated policies on spirals_mix (issue #16, round 5).

    PYTHONPATH=src python scripts/analysis/esper_per_seed.py sqlite:///esper.db noop,heuristic,learned:SHA 100 130 eval
    (seeds FIRST…LAST-1 of the runs tagged TAG: eval, confirm); TASK=spirals_mix_pre for round 7.
"""
import os, sys, statistics as st
from labledger.ledger import open_ledger
from labledger.security import KeyRing
from labledger.lab.esper import collect, tolaria
from labledger.lab.esper.evaluate import score_run
url, pols = sys.argv[1], sys.argv[2].split(",")
store = open_ledger(url, keyring=KeyRing({"lab": b"k"*32}), strict=False)
TASK = os.environ.get("TASK", "spirals_mix")
spec = collect.EpisodeSpec(task=TASK, epochs=20, window=20)
mix = tolaria.task(TASK)
rows = {}
for seed in range(int(sys.argv[3]), int(sys.argv[4])):
    rows[seed] = {p: score_run(store, spec, p, seed, collect.run_id(spec, sys.argv[5], p, seed)).metric for p in pols}
for t in mix.mix:
    ss = [s for s in rows if mix.turns_of(s) == t]
    print(f"turns {t} n={len(ss)}: " + " ".join(f"{p[:22]}={st.mean(rows[s][p] for s in ss):.4f}" for p in pols))
best = [max(rows[s].values()) for s in rows]
print("per-seed best of these:", round(st.mean(best), 4))
