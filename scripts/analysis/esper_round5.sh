#!/bin/bash
# Issue #16, round 5: the whole pipeline from an empty log (docs/results/2026-12-02-esper5-s4.md).
#   bash scripts/analysis/esper_round5.sh [DIR]     (default DIR: a new temp dir; about 20 minutes)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$(mktemp -d)}
mkdir -p "$dir" && cd "$dir"
L="$repo/.venv/bin/labledger --db sqlite:///$dir/esper.db"
export OMP_NUM_THREADS=1
ck=learned:65394e4b807d0b3ebbeaeec261863869637b21e06d91e8b8957e7c797300f0fa
$L init
$L esper collect --task spirals_mix --seeds 200-599 --policy once:5 --epochs 20 --window end
$L esper learn --task spirals_mix --method fqi --iterations 3 --steps 150 --temperature 0.01 --support once:5 --horizon 20 \
  2> >(tee learn.err >&2)
grep -q "$ck" learn.err || { echo "the checkpoint differs from $ck: see learn.err" >&2; exit 1; }
$L esper evaluate --task spirals_mix --epochs 20 --window end --seeds 100-129 --plot eval.png \
  --policies heuristic,noop,random,fixed:residual_mlp:r0,fixed:wide_mlp:r0,$ck
$L esper evaluate --task spirals_mix --epochs 20 --window end --seeds 130-199 --tag confirm --plot confirm.png \
  --policies heuristic,noop,random,$ck
echo "logs and plots in $dir"
