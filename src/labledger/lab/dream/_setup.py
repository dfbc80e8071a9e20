"""What a D-REAM run starts from: the request, its configuration, its ``run.RunStarted``.

Private to ``runner``: pure functions of the command line and the config files,
plus the checks a resumed run makes against what it recorded.
"""

from __future__ import annotations

import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from labledger.errors import UsageError
from labledger.events.dream import DreamManifest, Regime
from labledger.events.runs import RunStarted, Subsystem
from labledger.lab.dream import state as st
from labledger.lab.dream.config import CapsFile, DomainSpec, RegimesFile, code_hash


@dataclass(frozen=True)
class RunRequest:
    """A new run: the CLI's ``dream run`` arguments."""

    domain: str
    generations: int = 2
    population: int = 4
    trials: int | None = None
    """Trials per regime; ``None`` takes the policy's (10)."""
    seed: int | None = None
    budget_ms: int | None = None
    regimes_path: Path | None = None
    caps_path: Path | None = None
    run_id: str | None = None
    refresh_baseline: tuple[str | None, ...] = ()
    """``DOMAIN[:REGIME]`` baselines to re-measure (empty: the run's domain, every regime)."""


def started(config: st.DreamRunConfig, regimes: RegimesFile, caps: CapsFile) -> RunStarted:
    from labledger._version import __version__

    manifest = DreamManifest(
        code_hash=code_hash(),
        regimes_sha256=regimes.sha256,
        caps_sha256=caps.sha256,
        rng_seed=config.seed,
    )
    return RunStarted(
        subsystem=Subsystem.DREAM,
        config=msgspec.to_builtins(config),
        code_version=__version__,
        host=socket.gethostname() or "unknown",
        heartbeat_interval_s=beat_interval(config),
        manifest=manifest,
    )


def check_recorded(
    run_id: str, manifest: DreamManifest, regimes: RegimesFile, caps: CapsFile
) -> None:
    recorded = (
        ("regimes", regimes.sha256, manifest.regimes_sha256),
        ("caps", caps.sha256, manifest.caps_sha256),
    )
    for what, got, want in recorded:
        if got != want:
            raise UsageError(
                f"run {run_id!r} used a different {what} file (sha256 {want[:12]}…): "
                f"pass that file with --{what}"
            )


def recorded(name: str) -> Path | None:
    return None if name == "shipped" else Path(name)


def config_of(request: RunRequest, regimes: RegimesFile, caps: CapsFile) -> st.DreamRunConfig:
    policy = regimes.config.policy
    trials = request.trials if request.trials is not None else policy.trials
    budget = request.budget_ms if request.budget_ms is not None else policy.budget_ms
    if min(request.generations, request.population, trials, budget) < 1:
        raise UsageError("generations, population, trials and budget-ms must be >= 1")
    scales = {r.value: regimes.config.regimes[r].scale for r in Regime}
    return st.DreamRunConfig(
        domain=request.domain,
        generations=request.generations,
        population=request.population,
        trials=trials,
        seed=request.seed if request.seed is not None else secrets.randbelow(2**31),
        retries=policy.retries,
        timeout_s=policy.timeout_s,
        heartbeat_every=policy.heartbeat_every,
        regimes=list(scales),
        budgets_ms=st.budgets_ms(budget, scales),
        regimes_file="shipped" if regimes.shipped else str(regimes.path.resolve()),
        caps_file="shipped" if caps.shipped else str(caps.path.resolve()),
        caps={m.value: c.max for m, c in caps.config.for_domain(request.domain).items()},
        units=units_of(regimes.config.domains[request.domain]),
        min_requests=policy.min_requests,
    )


def units_of(spec: DomainSpec) -> dict[str, str]:
    """Every KPI's unit; ``perf`` in the domain's own throughput unit."""
    request = f" (request: {spec.request})" if spec.request else ""
    return {
        "perf": spec.perf_unit,
        "p95_ms": f"ms per request{request}",
        "watts": "W",
        "watts_modelled": "W (modelled)",
        "temp_peak_c": "°C",
        "errors": "count",
        "oom": "count",
        "requests": "count",
        "cpu_s": "s",
        "peak_rss_mb": "MiB",
    }


def new_run_id(domain: str) -> str:
    return f"{domain}-{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(4)}"


def beat_interval(config: st.DreamRunConfig) -> float:
    slowest_s = max(config.budgets_ms.values()) / 1000
    return round(config.heartbeat_every * (2 * slowest_s + 1.0), 3)
