"""Measuring one trial: a real workload subprocess, background load, host sensors, retries.

The workload prints one JSON line of KPIs (``perf``, ``p95_ms``, ``errors``,
``oom``; optionally ``watts`` and ``temp_peak_c`` when it can read its own
device, which then win over the host sensors). An attempt *fails* when the
process exits non-zero, prints no JSON object, reports a KPI of the wrong type
or out of range, or outlives ``timeout_s``; a failed attempt is re-run up to
``retries`` times. A trial whose every attempt failed is still recorded — as
``errors = 1``, ``perf`` and ``p95_ms`` absent, and ``oom = 1`` when the
process was killed by SIGKILL that we did not send (the kernel's OOM killer).
Errors a workload *reports* (``errors > 0``) are measurements, not failures,
and are not retried.

A trial that did no work (``perf`` absent or 0, no requests) or served fewer
than ``min_requests`` requests is *failed* too: re-run like a crash, and, when
every attempt falls short, recorded with its KPIs as measured and a
``failure`` reason, so it counts in no mean, CI or baseline.

Power: ``watts`` is a reading (RAPL, or the workload's own device); without
one it is absent, and ``watts_modelled`` (:func:`sensors.modelled_watts`)
estimates it from the workload's CPU time, labelled as a model.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labledger.events.dream import Provenance, SensorProvenance, TrialKpis
from labledger.lab.dream.config import Background, DomainSpec, workloads_dir
from labledger.lab.dream.sensors import WATTS_MODEL, HostSensors, Meter, modelled_watts

POLL_S = 0.01


@dataclass(frozen=True)
class TrialSpec:
    """Everything one trial's subprocess needs."""

    script: Path
    genome: dict[str, Any]
    budget_ms: int
    mode: str
    background: int
    timeout_s: float
    workdir: Path
    seed: int
    sensor: str | None = None
    tool: str | None = None
    min_requests: int = 1


@dataclass
class Measured:
    """A trial's KPIs and how they were obtained (kept in the event's metadata)."""

    kpis: TrialKpis
    attempts: int
    wall_ms: float
    command: str
    failures: list[str] = field(default_factory=list)
    failure: str | None = None
    """Why the recorded trial does not count (``None``: a valid trial)."""
    stdout: str = ""

    @property
    def sensors(self) -> SensorProvenance:
        """Where ``watts`` and ``temp_peak_c`` came from."""
        k = self.kpis
        return SensorProvenance(
            watts=_seen(k.watts),
            temp_peak_c=_seen(k.temp_peak_c),
            watts_modelled=Provenance.MODELLED if k.watts_modelled is not None else _seen(None),
            watts_model=WATTS_MODEL if k.watts_modelled is not None else None,
        )


def _seen(value: float | None) -> Provenance:
    return Provenance.ABSENT if value is None else Provenance.MEASURED


def workload_command(spec: TrialSpec) -> list[str]:
    """The argv of the workload: ``fio`` when the domain names it and it is installed."""
    if spec.tool == "fio" and shutil.which("fio"):
        return fio_command(spec)
    return [
        sys.executable,
        str(spec.script),
        "--genome",
        json.dumps(spec.genome, sort_keys=True),
        "--budget-ms",
        str(spec.budget_ms),
        "--mode",
        spec.mode,
        "--workdir",
        str(spec.workdir),
        "--seed",
        str(spec.seed),
    ]


def fio_command(spec: TrialSpec) -> list[str]:
    """A timed fio write+read job shaped by the storage genome (``buffer_kb``, …)."""
    g = spec.genome
    seconds = max(1, math.ceil(spec.budget_ms / 1000))
    return [
        "fio",
        "--name=dream",
        f"--directory={spec.workdir}",
        "--rw=readwrite",
        f"--bs={int(g.get('buffer_kb', 64))}k",
        f"--size={int(g.get('file_mb', 16))}m",
        f"--fsync={int(g.get('fsync_every', 8))}",
        f"--runtime={seconds}",
        "--time_based",
        "--output-format=json",
        "--group_reporting",
    ]


def parse_fio(text: str) -> dict[str, Any]:
    """KPIs from fio's JSON: MiB/s written+read, p95 completion latency, job errors."""
    job = json.loads(text)["jobs"][0]
    perf = (job["read"]["bw"] + job["write"]["bw"]) / 1024  # KiB/s → MiB/s
    p95s = [
        job[d]["clat_ns"]["percentile"]["95.000000"] / 1e6
        for d in ("read", "write")
        if job[d].get("clat_ns", {}).get("percentile")
    ]
    return {
        "perf": perf,
        "p95_ms": max(p95s) if p95s else None,
        "errors": int(job.get("error", 0)),
        "oom": 0,
    }


def background_commands(bg: Background, n: int, seconds: int, workloads: Path) -> list[list[str]]:
    """The background load of a regime: one stress-ng with ``n`` CPU workers, else ``n`` burners.

    Both stop on their own after ``seconds`` (and the burners when their parent dies),
    so a killed runner leaves nothing spinning for long.
    """
    if n <= 0:
        return []
    if shutil.which(bg.tool):
        return [[bg.tool, *(a.format(n=n, seconds=seconds) for a in bg.args)]]
    burner = [sys.executable, str(workloads / bg.fallback), "--seconds", str(seconds)]
    return [burner for _ in range(n)]


def _kpi(raw: dict[str, Any], name: str, integer: bool = False) -> float | int | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} is {value!r}, not a finite number")
    if integer and (not float(value).is_integer() or value < 0):
        raise ValueError(f"{name} is {value!r}, not a count")
    if name != "perf" and name != "temp_peak_c" and value < 0:
        raise ValueError(f"{name} is {value!r}, below zero")
    return int(value) if integer else float(value)


def parse_kpis(
    stdout: str, watts: float | None, temp: float | None, wall_s: float = 0.0
) -> TrialKpis:
    """The KPIs in the last non-empty line of ``stdout`` (a JSON object).

    Host readings fill ``watts`` and ``temp_peak_c`` unless the workload reported
    them; ``watts_modelled`` comes from the reported ``cpu_s`` over ``wall_s``.

    Raises:
        ValueError: no JSON object, or a KPI of the wrong type or range.
    """
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the workload printed nothing")
    raw = json.loads(lines[-1])
    if not isinstance(raw, dict):
        raise ValueError("the workload's last line is not a JSON object")
    own_watts, own_temp = _kpi(raw, "watts"), _kpi(raw, "temp_peak_c")
    cpu_s = _kpi(raw, "cpu_s")
    return TrialKpis(
        perf=_kpi(raw, "perf"),
        p95_ms=_kpi(raw, "p95_ms"),
        watts=own_watts if own_watts is not None else watts,
        temp_peak_c=own_temp if own_temp is not None else temp,
        errors=_kpi(raw, "errors", integer=True),  # type: ignore[arg-type]
        oom=_kpi(raw, "oom", integer=True),  # type: ignore[arg-type]
        requests=_kpi(raw, "requests", integer=True),  # type: ignore[arg-type]
        cpu_s=cpu_s,
        peak_rss_mb=_kpi(raw, "peak_rss_mb"),
        watts_modelled=None if cpu_s is None else modelled_watts(cpu_s, wall_s),
    )


def shortfall(kpis: TrialKpis, min_requests: int) -> str | None:
    """Why a trial that ran to the end still does not count, or ``None``.

    No work (``perf`` absent or 0, or zero requests) and fewer than
    ``min_requests`` requests both fail it; a workload that does not report
    requests (fio) is judged by ``perf`` alone.
    """
    if kpis.oom:
        return None  # an OOM is a measurement (its cap decides), not missing work
    if kpis.perf is None or kpis.perf <= 0 or kpis.requests == 0:
        return "the trial did no work"
    if kpis.requests is not None and kpis.requests < min_requests:
        return f"only {kpis.requests} requests (the minimum is {min_requests})"
    return None


def _start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


@dataclass
class _Attempt:
    kpis: TrialKpis | None
    failure: str | None
    oom_killed: bool
    watts: float | None
    temp: float | None
    wall_ms: float
    stdout: str = ""


def _attempt(
    spec: TrialSpec, argv: list[str], bg: list[list[str]], sensors: HostSensors
) -> _Attempt:
    loads = [_start(cmd) for cmd in bg]
    try:
        started = time.monotonic()
        meter = Meter(sensors, spec.sensor, started)
        proc = _start(argv)
        out, err, timed_out = _wait(proc, meter, started + spec.timeout_s)
        ended = time.monotonic()
        watts, temp = meter.stop(ended)
    finally:
        for load in loads:
            _stop(load)
    wall_ms = (ended - started) * 1000
    oom_killed = proc.returncode == -signal.SIGKILL and not timed_out
    failure = None
    if timed_out:
        failure = f"timed out after {spec.timeout_s:g}s"
    elif proc.returncode != 0:
        failure = f"exit {proc.returncode}: {err.strip()[-300:]}"
    if failure is not None:
        return _Attempt(None, failure, oom_killed, watts, temp, wall_ms, out)
    if spec.tool == "fio" and argv[0] == "fio":
        out = json.dumps(parse_fio(out))
    try:
        kpis = parse_kpis(out, watts, temp, wall_ms / 1000)
    except ValueError as exc:
        return _Attempt(None, f"bad output: {exc}", False, watts, temp, wall_ms, out)
    short = shortfall(kpis, spec.min_requests)
    return _Attempt(kpis, short, False, watts, temp, wall_ms, out)


def _wait(proc: subprocess.Popen[str], meter: Meter, deadline: float) -> tuple[str, str, bool]:
    while True:
        try:
            out, err = proc.communicate(timeout=POLL_S)
            return out, err, False
        except subprocess.TimeoutExpired:
            meter.sample()
            if time.monotonic() >= deadline:
                _stop(proc)
                return "", "", True


def measure(
    spec: TrialSpec, retries: int, sensors: HostSensors, background: Background
) -> Measured:
    """Run one trial, re-running failed attempts up to ``retries`` times (see module doc)."""
    argv = workload_command(spec)
    seconds = max(1, math.ceil(spec.timeout_s))
    bg = background_commands(background, spec.background, seconds, workloads_dir())
    failures: list[str] = []
    last: _Attempt | None = None
    for _ in range(retries + 1):
        last = _attempt(spec, argv, bg, sensors)
        if last.kpis is not None and last.failure is None:
            return Measured(
                last.kpis, len(failures) + 1, last.wall_ms, _name(argv), failures, None, last.stdout
            )
        failures.append(last.failure or "failed")
    assert last is not None
    if last.kpis is not None:  # it ran, but did too little work to count
        return Measured(
            last.kpis, len(failures), last.wall_ms, _name(argv), failures, last.failure, last.stdout
        )
    kpis = TrialKpis(
        perf=None,
        p95_ms=None,
        watts=last.watts,
        temp_peak_c=last.temp,
        errors=1,
        oom=1 if last.oom_killed else 0,
    )
    failure = last.failure or "failed"
    return Measured(kpis, len(failures), last.wall_ms, _name(argv), failures, failure, last.stdout)


def _name(argv: list[str]) -> str:
    return Path(argv[1]).name if argv[0] == sys.executable else argv[0]


def unavailable(spec: DomainSpec) -> str | None:
    """Why this machine cannot measure the domain, or ``None`` (torch is imported lazily)."""
    if spec.requires != "cuda":
        return None
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is false)"
    return None
