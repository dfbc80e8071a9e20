#!/bin/bash
# Issue #16, round 7: the whole pipeline from an empty log (docs/results/2026-12-04-esper7-s6.md).
#   bash scripts/analysis/esper_round7.sh [DIR]     (default DIR: a new temp dir; about 25 minutes)
# Round 6's data and learner, unchanged, on spirals_mix_pre: the seed slots sit before each ReLU,
# so a seed in r0 widens the host's first layer (tolaria.TASKS). Seeds 1200-1399 are a fourth
# held-out set, never run before this round.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$(mktemp -d)}
mkdir -p "$dir" && cd "$dir"
L="$repo/.venv/bin/labledger --db sqlite:///$dir/esper.db"
export OMP_NUM_THREADS=1
expect=${EXPECT:-}
T=spirals_mix_pre
E="esper evaluate --task $T --epochs 20 --window end"
$L init
$L esper collect --task $T --seeds 200-999 --policy once:2 --epochs 20 --window end
$L esper learn --task $T --method fqi --iterations 3 --steps 150 --temperature 0.01 --support once:2 --horizon 20 \
  2> >(tee learn.err >&2)
sleep 1  # the tee of stderr may still be writing
ck=$(grep -o 'learned:[0-9a-f]\{64\}' learn.err | tail -1)
echo "checkpoint: $ck"
[ -z "$expect" ] || [ "$ck" = "learned:$expect" ] || { echo "the checkpoint differs from $expect" >&2; exit 1; }
$L $E --seeds 100-129 --plot eval.png --policies heuristic,noop,random,fixed:residual_mlp:r0,$ck
$L $E --seeds 1000-1069 --tag confirm --plot confirm.png --policies heuristic,noop,random,$ck
$L $E --seeds 1070-1199 --tag third --plot third.png --policies heuristic,noop,random,$ck
$L $E --seeds 1200-1399 --tag fourth --plot fourth.png --policies heuristic,noop,random,$ck
echo "logs and plots in $dir"
