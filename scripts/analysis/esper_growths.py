"""Where the learned policies grew (issue #16): germinations per tag, difficulty, epoch, slot, blueprint.

    PYTHONPATH=src python scripts/analysis/esper_growths.py sqlite:///esper.db [TASK]   (TASK: spirals_mix_pre)

Reads the esper_training projection's transitions of every tamiyo-graph policy, and each
seed's difficulty from the task's own draw (tolaria.Task.turns_of).
"""
import collections, json, sqlite3, sys
from labledger.lab.esper import tolaria
from labledger.lab.esper.simic import FEATURE_NAMES

path = sys.argv[1].removeprefix("sqlite:///")
mix = tolaria.task(sys.argv[2] if len(sys.argv) > 2 else "spirals_mix_pre")
epoch = FEATURE_NAMES.index("metrics.epoch")
db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
table = next(r[0] for r in db.execute(
    "select name from sqlite_master where type='table' and name like 'p_esper_training_transitions%'"))
rows = db.execute(f"select run_id, slot, blueprint, obs from {table} "
                  "where policy_version like 'tamiyo-graph%' and op='GERMINATE'").fetchall()
runs = collections.Counter()
for (run,) in db.execute("select distinct run_id from p_esper_training_runs_v3g1 where run_id like '%-learned-%'"):
    seed = int(run.rsplit("-s", 1)[1])
    runs[(run.split("-")[0], "hard" if mix.turns_of(seed) == max(mix.mix) else "easy")] += 1
grown = collections.Counter()
for run, slot, blueprint, obs in rows:
    seed = int(run.rsplit("-s", 1)[1])
    hard = "hard" if mix.turns_of(seed) == max(mix.mix) else "easy"
    grown[(run.split("-")[0], hard, int(json.loads(obs)[epoch]), slot, blueprint)] += 1
for key, n in sorted(grown.items()):
    print(*key, n, f"of {runs[key[:2]]} runs")
