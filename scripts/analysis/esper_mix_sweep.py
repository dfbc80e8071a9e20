"""Sweep spirals difficulty (issue #16, round 5): noop / heuristic / fixed:BP:SLOT per half-turns, hints only.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/analysis/esper_mix_sweep.py 0.5,0.75,1.0,1.25,1.5,1.75 12 \\
        noop,heuristic,fixed:residual_mlp:r0,fixed:wide_mlp:r0,fixed:low_rank:r0,fixed:residual_mlp:r1,fixed:wide_mlp:r1

Seeds 300…300+N-1, 20 epochs, no counterfactual (speed). In the environment, LR=0.15 changes the SGD rate,
EP=30 the epochs, BATCH=8 the batch, W=4 the host width and PRE=1 slots before the ReLU; DIGITS=1 sweeps the digits at width W instead.
Prints mean metric per policy, and the paired difference to the first policy (± standard error, sd).
"""
import os, sys, uuid, tempfile, statistics as st
from labledger.ledger import open_ledger
from labledger.store import init_store
from labledger.security import KeyRing
from labledger.lab.esper import session, collect, tolaria
from labledger.lab.esper.evaluate import score_run
turns = [float(t) for t in sys.argv[1].split(",")]; LR = float(os.environ.get("LR", "0.3")); EP = int(os.environ.get("EP", "20")); W = int(os.environ.get("W", "6")); B = int(os.environ.get("BATCH", "32"))
seeds = range(300, 300 + int(sys.argv[2]))
pols = sys.argv[3].split(",")
for t in turns:
    if os.environ.get("DIGITS"):  # the digits at host width W (the half-turns are ignored)
        name = f"digits_w{W}"
        tolaria.TASKS[name] = tolaria.Task(name, 64, W, 10)
    else:
        pre = bool(os.environ.get("PRE"))
        name = f"spirals_x{t}_w{W}" + ("_pre" if pre else "")
        tolaria.TASKS[name] = tolaria.Task(name, 2, W, 3, t, pre_activation=pre)
    db = f"{tempfile.gettempdir()}/sweep-{uuid.uuid4().hex[:6]}.db"; url = "sqlite:///" + db; init_store(url)
    store = open_ledger(url, keyring=KeyRing({"lab": b"k" * 32}), strict=False)
    spec = collect.EpisodeSpec(task=name, epochs=EP, window=EP)
    res = {p: [] for p in pols}
    for seed in seeds:
        for p in pols:
            import dataclasses; cfg = dataclasses.replace(spec.config(seed, p), counterfactual=False, lr=LR, batch=B)
            rid = f"{p}-{seed}"
            session.run_session(store, cfg, run_id=rid)
            r = score_run(store, spec, p, seed, rid)
            res[p].append(r.metric)
    base = res[pols[0]]
    line = [f"turns {t}:"]
    for p, v in res.items():
        d = [a - b for a, b in zip(v, base)]; sd = st.stdev(d)
        line.append(f"{p} {st.mean(v):.3f} (Δ{pols[0]} {st.mean(d):+.3f}±{st.stdev(d)/len(d)**.5:.3f} sd {sd:.3f})")
    print(f"lr {LR} ep {EP} w {W} batch {B}", " | ".join(line), flush=True)
