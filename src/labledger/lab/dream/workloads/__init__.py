"""Shipped D-REAM workload scripts, run by path in a subprocess (never imported).

Each script is self-contained (standard library only, fast to start) and takes
``--genome JSON --budget-ms N --mode steady|alternate --workdir DIR --seed N``.
It works for about the budget — in ``alternate`` mode as busy and quiet
phases, a quarter of the budget each — and prints ONE JSON line:
``{"perf": …, "p95_ms": …, "errors": …, "oom": …}``. ``perf`` is throughput
over the busy time in the domain's unit (``regimes.yaml``: ``perf_unit``);
``p95_ms`` is the 95th percentile of the latency of one operation or batch.
"""
