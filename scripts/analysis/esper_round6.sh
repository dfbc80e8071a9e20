#!/bin/bash
# Issue #16, round 6: the whole pipeline from an empty log (docs/results/2026-12-03-esper6-s5.md).
#   bash scripts/analysis/esper_round6.sh [DIR]     (default DIR: a new temp dir; about 20 minutes)
# Round 5's settings, but the once behaviour grows at epochs 0-2 only (once:2) and twice as many
# episodes (seeds 200-999), so each (epoch, slot, blueprint) arm holds ~44 episodes, not ~11.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$(mktemp -d)}
mkdir -p "$dir" && cd "$dir"
L="$repo/.venv/bin/labledger --db sqlite:///$dir/esper.db"
export OMP_NUM_THREADS=1
ck=learned:d96a7ba28a95908fc8e69da0586ef96ca3df49e576e8792f49428fde1aa2e785
E="esper evaluate --task spirals_mix --epochs 20 --window end"
$L init
$L esper collect --task spirals_mix --seeds 200-999 --policy once:2 --epochs 20 --window end
$L esper learn --task spirals_mix --method fqi --iterations 3 --steps 150 --temperature 0.01 --support once:2 --horizon 20 \
  2> >(tee learn.err >&2)
grep -q "$ck" learn.err || { echo "the checkpoint differs from $ck: see learn.err" >&2; exit 1; }
$L $E --seeds 100-129 --plot eval.png --policies heuristic,noop,random,fixed:wide_mlp:r0,$ck
$L $E --seeds 1000-1069 --tag confirm --plot confirm.png --policies heuristic,noop,random,$ck
$L $E --seeds 1070-1199 --tag third --plot third.png --policies heuristic,noop,random,$ck
echo "logs and plots in $dir"
