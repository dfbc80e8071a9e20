import sys, os, uuid
from labledger.ledger import open_ledger
from labledger.store import init_store
from labledger.security import KeyRing
from labledger.lab.esper import session, baselines, actions, collect
from labledger.events.esper import LifecycleOp
from labledger.lab.esper.evaluate import score_run
import tempfile; db=f"{tempfile.gettempdir()}/esper-fixed-{uuid.uuid4().hex[:6]}.db"; url="sqlite:///"+db; init_store(url)
store = open_ledger(url, keyring=KeyRing({"lab": b"k"*32}), strict=False)
bp = sys.argv[1]; slot = sys.argv[2]; at = int(sys.argv[3])
class Fixed:
    version="fixed"
    def decide(self, state, slots):
        if state.metrics is None: return None
        st = baselines.stages_of(state, slots)
        if state.metrics.epoch == at and st[slot] == "DORMANT":
            return baselines.decision(actions.Action(LifecycleOp.GERMINATE, slot, bp), "fixed", risk=0.1, reason="x")
        for s, v in st.items():
            if v == "HOLDING": return baselines.decision(actions.Action(LifecycleOp.FOSSILIZE, s), "fixed", risk=0.1, reason="x")
        return None
session.load_policy = lambda spec, *a: Fixed() if spec == "fixed" else __import__("labledger.lab.esper.tamiyo", fromlist=["x"]).load_policy(spec, *a)
spec = collect.EpisodeSpec(task=os.environ.get('TASK','spirals'), epochs=int(os.environ.get('EPOCHS','12')))
res = {"noop": [], "fixed": []}
for seed in range(100, 100+int(sys.argv[4])):
    for pol in res:
        rid=f"{pol}-{seed}"
        session.run_session(store, spec.config(seed, pol), run_id=rid)
        r = score_run(store, spec, pol, seed, rid); res[pol].append((r.final_accuracy, r.metric, r.reward))
for pol, v in res.items():
    n=len(v); print(pol, "acc %.4f metric %.4f reward %.4f" % (sum(a for a,_,_ in v)/n, sum(m for _,m,_ in v)/n, sum(r for *_,r in v)/n))
