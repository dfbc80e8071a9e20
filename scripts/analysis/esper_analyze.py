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
d = defaultdict(list)
for t in rows:
    if not t.run_id.startswith("collect-"): continue
    e = int(t.obs[ei]); key = (t.heads["op"], t.slot if t.heads["op"]!="WAIT" else "-", t.blueprint or "")
    d[(e if e < 3 else 3, key)].append(t.reward)
for k in sorted(d):
    v = d[k]
    if k[1][0] == "GERMINATE" or k[0] == 0: print(k, len(v), round(sum(v)/len(v), 4))
