"""Performance-component spread and pairwise order of one ToolGen run (read from the log)."""
import sys
from labledger.ledger import open_ledger
from labledger.events.typed import typed
from labledger.events.toolgen import ToolEvaluated, HandoffRequested, ToolSynthesized

url, run = sys.argv[1], sys.argv[2]
with open_ledger(url, strict=False) as store:
    evs = [t.event for t in typed(store.read_all()) if t.record.run_id == run]
ev = [e for e in evs if isinstance(e, ToolEvaluated)]
perf = [e.performance for e in ev]
measured = [e.performance for e in ev if e.median_ms is not None]
print(f"evaluations {len(ev)} (measured {len(measured)}); performance min {min(perf):.3f} "
      f"max {max(perf):.3f} spread {max(perf) - min(perf):.3f}; among measured: min "
      f"{min(measured):.3f} max {max(measured):.3f} spread {max(measured) - min(measured):.3f}")
import statistics
q = statistics.quantiles(measured, n=4)
print("measured performance quartiles " + ", ".join(f"{x:.3f}" for x in q))
for spec in sorted({e.spec_id for e in ev}):
    mine = [e.performance for e in ev if e.spec_id == spec and e.median_ms is not None]
    print(f"  {spec}: measured {len(mine)}, performance {min(mine):.3f}..{max(mine):.3f}")
print(f"performance == 1.0 in {sum(p == 1.0 for p in perf)} of {len(perf)}; "
      f"distinct values {len(set(round(p, 6) for p in perf))}")
originals = [e for e in evs if isinstance(e, ToolSynthesized)]
handoffs = [e for e in evs if isinstance(e, HandoffRequested)]
print(f"trials {len(originals)}, handed off {len(handoffs)} "
      f"({len(handoffs) / len(originals):.3f} of the generator's tools)")
# Pairs of equally correct, measured tools of one spec: does the faster one rank higher?
latest = {e.tool_id: e for e in ev}
tools = [e for e in latest.values() if e.median_ms is not None]
for factor in (1.1, 1.5, 2.0):
    inverted = total = 0
    for a in tools:
        for b in tools:
            if a.spec_id == b.spec_id and a.correctness == b.correctness == 1.0 \
                    and a.stability == b.stability and a.median_ms * factor < b.median_ms:
                total += 1
                inverted += a.fitness < b.fitness
    print(f"pairs (same spec, both correct and stable, one >{factor}x faster): {total}; "
          f"slower one ranked higher in {inverted}")
