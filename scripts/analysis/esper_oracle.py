"""The oracle bound on spirals_mix (issue #16, round 5): grow only on hard seeds, vs noop, bootstrap CI.

    PYTHONPATH=src python scripts/analysis/esper_oracle.py sqlite:///esper.db
"""
import sys, random, statistics as st
from labledger.ledger import open_ledger
from labledger.security import KeyRing
from labledger.lab.esper import collect, tolaria
from labledger.lab.esper.evaluate import score_run
store = open_ledger(sys.argv[1], keyring=KeyRing({"lab": b"k"*32}), strict=False)
spec = collect.EpisodeSpec(task="spirals_mix", epochs=20, window=20)
mix = tolaria.task("spirals_mix")
m = lambda p, s: score_run(store, spec, p, s, collect.run_id(spec, "eval", p, s)).metric
for grow in ("fixed:wide_mlp:r0", "fixed:residual_mlp:r0"):
    d = [(m(grow, s) - m("noop", s)) if mix.turns_of(s) == 1.5 else 0.0 for s in range(100, 130)]
    hard = [x for s, x in zip(range(100,130), d) if mix.turns_of(s) == 1.5]
    rng = random.Random(0); bs = sorted(st.mean(rng.choices(d, k=30)) for _ in range(4000))
    print(grow, "oracle-vs-noop mean %+.4f CI [%+.4f, %+.4f]" % (st.mean(d), bs[100], bs[3899]), "hard diffs:", " ".join(f"{x:+.3f}" for x in hard))
