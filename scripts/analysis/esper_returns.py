"""Mean return-to-go (sum of the one reward from a decision to the end of its episode) of the
collected decisions at epochs 0-1, by action: python esper_returns.py DB_URL."""
import sys
from labledger.ledger import open_ledger
from labledger.security import KeyRing
from labledger.cli._engine import caught_up
from labledger.projections.esper_training import completed, FEATURE_NAMES
from collections import defaultdict
store = open_ledger(sys.argv[1], keyring=KeyRing({"lab": b"k"*32}), strict=False)
eng = caught_up(store, "esper_training", progress=False)
with eng.read("esper_training") as tx: rows = completed(tx)
ei = FEATURE_NAMES.index("metrics.epoch")
runs = defaultdict(list)
for t in rows:
    if t.run_id.startswith("collect-"): runs[t.run_id].append(t)
d = defaultdict(list)
for rid, ts in runs.items():
    ts.sort(key=lambda t: t.obs[ei])
    g = 0.0
    for t in reversed(ts):
        g += t.reward
        e = int(t.obs[ei]); key = (t.heads["op"], t.slot if t.heads["op"]!="WAIT" else "-", t.blueprint or "")
        if e <= 1: d[(e, key)].append(g)
for k in sorted(d):
    v = d[k]; print(k, len(v), round(sum(v)/len(v), 4))
