"""Host sensors: package power from RAPL/powercap, peak temperature from thermal zones.

Both are read from sysfs and only when readable: many kernels restrict
``energy_uj`` to root, containers and VMs often have neither. A reading that
cannot be taken is ``None`` — the trial records the KPI as absent; nothing is
estimated.

Power: the sum over top-level RAPL packages (``intel-rapl:N``, not their
sub-zones, which the package already includes) of the ``energy_uj`` delta over
the trial, divided by its wall time; a counter that wrapped is corrected with
its ``max_energy_range_uj``.

Temperature: zones are grouped into sensor classes by their ``type`` (``cpu``:
package, core, SoC and ACPI zones; ``dimm``: memory modules; ``gpu``), and the
peak is the highest reading of the domain's class sampled while the trial ran.

Modelled power (:func:`modelled_watts`) is not a reading: it is the workload's
CPU time over the trial's wall time times a fixed per-core power
(:data:`WATTS_PER_BUSY_CORE`). It stands in for the power term of the score
where RAPL is absent (so a genome that burns more cores pays for it), is
recorded as ``watts_modelled`` with provenance ``modelled``, and never checks
the ``watts`` cap, which stays unverified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

WATTS_PER_BUSY_CORE = 15.0
"""A typical server core's active power above idle, in watts (a round figure, not a calibration)."""
WATTS_MODEL = f"{WATTS_PER_BUSY_CORE:g} W x workload CPU seconds / wall seconds"

POWERCAP = Path("/sys/class/powercap")
THERMAL = Path("/sys/class/thermal")

_CLASSES = {
    "cpu": re.compile(r"x86_pkg|cpu|core|k10temp|soc|acpitz|tctl|package", re.I),
    "dimm": re.compile(r"dimm", re.I),
    "gpu": re.compile(r"gpu", re.I),
}


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def watts_between(
    before: Mapping[str, int], after: Mapping[str, int], ranges: Mapping[str, int], seconds: float
) -> float | None:
    """Average power from two ``energy_uj`` snapshots of the same packages.

    Args:
        before, after: per package, the counter in microjoules.
        ranges: per package, ``max_energy_range_uj`` (to undo a wrap-around).
        seconds: the wall time between the snapshots.

    Returns:
        Watts, or ``None`` without a package read both times or without elapsed time.
    """
    common = sorted(set(before) & set(after))
    if not common or seconds <= 0:
        return None
    joules = 0.0
    for zone in common:
        delta = after[zone] - before[zone]
        if delta < 0:  # the counter wrapped once (a trial is far shorter than a wrap)
            delta += ranges.get(zone, 0)
        if delta < 0:
            return None
        joules += delta / 1e6
    return joules / seconds


def modelled_watts(cpu_s: float, wall_s: float) -> float | None:
    """:data:`WATTS_MODEL`: ``None`` without elapsed wall time."""
    return None if wall_s <= 0 else WATTS_PER_BUSY_CORE * cpu_s / wall_s


class HostSensors:
    """Reads this machine's RAPL packages and thermal zones (roots injectable for tests)."""

    def __init__(self, powercap: Path = POWERCAP, thermal: Path = THERMAL) -> None:
        self.packages = sorted(
            p for p in powercap.glob("intel-rapl:*") if re.fullmatch(r"intel-rapl:\d+", p.name)
        )
        self.zones = sorted(thermal.glob("thermal_zone*"))

    def energy_uj(self) -> dict[str, int]:
        """Per readable package, its energy counter now (empty when none is readable)."""
        found = {p.name: _read_int(p / "energy_uj") for p in self.packages}
        return {k: v for k, v in found.items() if v is not None}

    def energy_ranges(self) -> dict[str, int]:
        """Per package, the counter's wrap-around range (``max_energy_range_uj``)."""
        found = {p.name: _read_int(p / "max_energy_range_uj") for p in self.packages}
        return {k: v for k, v in found.items() if v is not None}

    def temperature_c(self, sensor: str | None) -> float | None:
        """The highest readable zone of class ``sensor`` in °C, or ``None``."""
        pattern = _CLASSES.get(sensor or "")
        if pattern is None:
            return None
        peak: float | None = None
        for zone in self.zones:
            try:
                kind = (zone / "type").read_text().strip()
            except OSError:
                continue
            milli = _read_int(zone / "temp") if pattern.search(kind) else None
            if milli is not None and (peak is None or milli / 1000 > peak):
                peak = milli / 1000
        return peak


class NoSensors(HostSensors):
    """A machine that can measure neither power nor temperature (tests, containers)."""

    def __init__(self) -> None:
        self.packages, self.zones = [], []


class Meter:
    """One trial's power and peak temperature: ``sample()`` while it runs, then ``stop()``."""

    def __init__(self, sensors: HostSensors, sensor: str | None, started_s: float) -> None:
        self.sensors, self.sensor, self.started_s = sensors, sensor, started_s
        self.energy0 = sensors.energy_uj()
        self.peak = sensors.temperature_c(sensor)

    def sample(self) -> None:
        """Take one temperature reading (the peak keeps the highest)."""
        value = self.sensors.temperature_c(self.sensor)
        if value is not None and (self.peak is None or value > self.peak):
            self.peak = value

    def stop(self, now_s: float) -> tuple[float | None, float | None]:
        """``(watts, temp_peak_c)`` from the start until ``now_s``; ``None`` where unreadable."""
        self.sample()
        energy1 = self.sensors.energy_uj() if self.energy0 else {}
        ranges = self.sensors.energy_ranges()
        watts = watts_between(self.energy0, energy1, ranges, now_s - self.started_s)
        return watts, self.peak
