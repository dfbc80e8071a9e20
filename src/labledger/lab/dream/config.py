"""``regimes.yaml`` and ``caps.yaml``: loaded, validated into typed structs, hashed.

The shipped defaults live next to this module (package data, found through
``importlib.resources`` both in the source tree and in an installed wheel);
users pass their own files. The SHA-256 of each file's exact bytes goes into
the run's :class:`~labledger.events.dream.DreamManifest`, so a resumed run can
prove it uses the same configuration.
"""

from __future__ import annotations

import hashlib
import math
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

import msgspec
import yaml

from labledger.errors import UsageError
from labledger.events.dream import CapMetric, Regime

_T = TypeVar("_T")

Choice = str | int | float | bool
"""One allowed value of a gene."""


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class Policy(_Spec, frozen=True):
    """How trials run: counts, retries, time limits, heartbeat cadence."""

    trials: int = 10
    retries: int = 2
    timeout_s: float = 60.0
    budget_ms: int = 200
    heartbeat_every: int = 5
    min_requests: int = 20
    """A trial that served fewer requests than this (or did no work) is a failed trial."""


class Evolution(_Spec, frozen=True):
    """Parameters of the evolutionary loop (see ``evolve``)."""

    mutation_rate: float = 0.3
    elite: int = 1
    tournament: int = 2


class RegimeSpec(_Spec, frozen=True):
    """The load shape of one regime: budget scale, background burners, phase mode."""

    scale: float
    background: int = 0
    mode: Literal["steady", "alternate"] = "steady"


class Background(_Spec, frozen=True):
    """The background load: an external tool when installed, else a shipped script."""

    tool: str = "stress-ng"
    args: list[str] = msgspec.field(default_factory=list)
    fallback: str = "burn.py"


class DomainSpec(_Spec, frozen=True):
    """One domain: its workload, the unit of its ``perf`` and its genome search space."""

    script: str
    perf_unit: str
    genes: dict[str, list[Choice]]
    request: str = ""
    """The fixed unit of work one request does (``p95_ms`` is the latency of one)."""
    tool: str | None = None
    requires: Literal["cuda"] | None = None


class RegimesConfig(_Spec, frozen=True):
    """The whole ``regimes.yaml``."""

    schema: Literal["dream.regimes.v1"]
    regimes: dict[Regime, RegimeSpec]
    domains: dict[str, DomainSpec]
    policy: Policy = Policy()
    evolution: Evolution = Evolution()
    background: Background = Background()


class Cap(_Spec, frozen=True):
    """An upper limit on one KPI; ``sensor`` names the thermal sensor class."""

    max: float
    sensor: str | None = None


class DomainCaps(_Spec, frozen=True):
    """The caps of one domain (any may be absent: no cap)."""

    temp_peak_c: Cap | None = None
    watts: Cap | None = None
    errors: Cap | None = None
    oom: Cap | None = None
    p95_ms: Cap | None = None
    peak_rss_mb: Cap | None = None
    error_rate: Cap | None = None

    def items(self) -> list[tuple[CapMetric, Cap]]:
        """The caps that are set, in :class:`CapMetric` order."""
        found = [(m, getattr(self, m.value)) for m in CapMetric]
        return [(m, c) for m, c in found if c is not None]


class CapsConfig(_Spec, frozen=True):
    """The whole ``caps.yaml``: defaults, overridden field by field per domain."""

    schema: Literal["dream.caps.v1"]
    defaults: DomainCaps = DomainCaps()
    domains: dict[str, DomainCaps] = msgspec.field(default_factory=dict)

    def for_domain(self, domain: str) -> DomainCaps:
        """The defaults with the domain's own caps laid over them."""
        own = self.domains.get(domain)
        if own is None:
            return self.defaults
        fields = {
            m.value: getattr(own, m.value) or getattr(self.defaults, m.value) for m in CapMetric
        }
        return DomainCaps(**fields)


class Loaded(msgspec.Struct, frozen=True):
    """A loaded configuration file: where it came from, its digest, its content."""

    path: Path
    sha256: str
    shipped: bool


class RegimesFile(Loaded, frozen=True):
    config: RegimesConfig


class CapsFile(Loaded, frozen=True):
    config: CapsConfig


def package_dir() -> Path:
    """The directory of the ``labledger.lab.dream`` package (its data files live here)."""
    return Path(str(resources.files("labledger.lab.dream")))


def workloads_dir() -> Path:
    """The directory of the shipped workload scripts."""
    return package_dir() / "workloads"


def _read(path: Path | None, default: str) -> tuple[Path, bytes, bool]:
    shipped = path is None
    where = package_dir() / default if path is None else path
    try:
        return where, where.read_bytes(), shipped
    except OSError as exc:
        raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from exc


def _convert(data: bytes, where: Path, cls: type[_T]) -> _T:
    try:
        raw = yaml.safe_load(data)
        return msgspec.convert(raw, cls)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise UsageError(f"{where}: {exc}") from exc


def load_regimes(path: Path | None = None) -> RegimesFile:
    """Load and validate ``regimes.yaml`` (the shipped one when ``path`` is ``None``).

    Raises:
        UsageError: unreadable, not YAML, not the schema, a regime missing, a
            gene without choices, a bad policy number, or a script not found.
    """
    where, data, shipped = _read(path, "regimes.yaml")
    config = _convert(data, where, RegimesConfig)
    _check_regimes(config, where)
    sha = hashlib.sha256(data).hexdigest()
    return RegimesFile(where, sha, shipped, config)


def _check_regimes(config: RegimesConfig, where: Path) -> None:
    missing = [r.value for r in Regime if r not in config.regimes]
    if missing:
        raise UsageError(f"{where}: regimes {', '.join(missing)} are not defined")
    p = config.policy
    if p.trials < 1 or p.retries < 0 or p.budget_ms < 1 or p.heartbeat_every < 1:
        raise UsageError(f"{where}: policy needs trials >= 1, retries >= 0, budget_ms >= 1")
    if p.min_requests < 1:
        raise UsageError(f"{where}: policy.min_requests must be >= 1")
    if not (p.timeout_s > 0 and math.isfinite(p.timeout_s)):
        raise UsageError(f"{where}: policy.timeout_s must be a positive number")
    evo = config.evolution
    if not 0.0 <= evo.mutation_rate <= 1.0 or evo.elite < 0 or evo.tournament < 1:
        raise UsageError(f"{where}: evolution needs mutation_rate in [0, 1], tournament >= 1")
    for name, spec in config.regimes.items():
        if not (spec.scale > 0 and math.isfinite(spec.scale)) or spec.background < 0:
            raise UsageError(f"{where}: regime {name.value} needs scale > 0, background >= 0")
    for domain, dspec in config.domains.items():
        empty = [g for g, choices in dspec.genes.items() if not choices]
        if not dspec.genes or empty:
            raise UsageError(f"{where}: domain {domain} needs genes, each with choices")
        script_path(config, where, domain)


def script_path(config: RegimesConfig, where: Path, domain: str) -> Path:
    """The workload script of ``domain``: relative to the YAML file, else a shipped one.

    Raises:
        UsageError: the domain is unknown or its script exists in neither place.
    """
    spec = config.domains.get(domain)
    if spec is None:
        known = ", ".join(sorted(config.domains))
        raise UsageError(f"unknown domain {domain!r}; {where.name} defines {known}")
    return resolve_script(spec.script, where)


def resolve_script(name: str, where: Path) -> Path:
    """``name`` next to the YAML file ``where``, else among the shipped workloads."""
    for candidate in (where.parent / name, workloads_dir() / name):
        if candidate.is_file():
            return candidate
    raise UsageError(f"{where}: workload script {name!r} not found")


def load_caps(path: Path | None = None) -> CapsFile:
    """Load and validate ``caps.yaml`` (the shipped one when ``path`` is ``None``).

    Raises:
        UsageError: unreadable, not YAML, not the schema, or a cap that is not a number.
    """
    where, data, shipped = _read(path, "caps.yaml")
    config = _convert(data, where, CapsConfig)
    for caps in [config.defaults, *config.domains.values()]:
        for metric, cap in caps.items():
            if not math.isfinite(cap.max):
                raise UsageError(f"{where}: cap {metric.value} must be a finite number")
    return CapsFile(where, hashlib.sha256(data).hexdigest(), shipped, config)


def code_hash() -> str:
    """SHA-256 over the D-REAM package's source and data files (path, NUL, bytes each).

    Files are taken in sorted relative-path order; caches are skipped.
    """
    root = package_dir()
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix in {".py", ".yaml"} and "__pycache__" not in p.parts
    )
    for p in files:
        digest.update(p.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()
