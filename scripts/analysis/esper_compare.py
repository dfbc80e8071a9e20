from labledger.ledger import open_ledger
from labledger.security import KeyRing
from labledger.lab.esper import collect, evaluate
store = open_ledger("sqlite:////tmp/esper_work/esper2.db", keyring=KeyRing(), strict=False)
spec = collect.EpisodeSpec(); same = diff = 0
for pol in ["noop", "learned:1b58f5bc0f6e692738f7a518cece9ea9f07f9db8814abb0e3a8beae142c37677"]:
    for seed in range(100, 110):
        a = evaluate.score_run(store, spec, pol, seed, collect.run_id(spec, "eval", pol, seed))
        b = evaluate.score_run(store, spec, pol, seed, collect.run_id(spec, "rerun", pol, seed))
        ok = (a.final_accuracy, a.params_added, a.reward) == (b.final_accuracy, b.params_added, b.reward)
        same += ok; diff += not ok
print("identical runs:", same, "different:", diff)
