"""Host energy from Linux powercap RAPL (`/sys/class/powercap`, Intel, and AMD since Linux 5.8).

Zones nest: `intel-rapl:0` is a package, `intel-rapl:0:0` its core sub-zone, which the package
already counts. We sum the package zones (domain `cpu_package`) and, separately, the `dram`
zones (domain `dram`, not part of the package counter); core/uncore sub-zones and `psys` (the
whole platform, overlapping both) are skipped so nothing is counted twice. `intel-rapl-mmio`
zones duplicate the MSR package zones and are skipped too. Counters wrap at
`max_energy_range_uj`. The meter keeps a running total per zone, read after read: a value below
the last one wrapped once, and the zone's highest power (its `constraint_*` limits with a margin
for short excursions, else a ceiling) bounds how many more wraps the time since the last read
could hide; where that bound allows another whole wrap, the energy cannot be counted and the
read raises `MeterFault` (the protocol redoes the window), as does an I/O error (AMD's driver
answers EIO at times) or a malformed value.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.measure.meters.base import Meter, MeterFault, MeterUnavailable, Reading

UJ_PER_J = 1e6
DEFAULT_ROOT = Path("/sys/class/powercap")
_ZONE_DIR = re.compile(r"^intel-rapl(:\d+)+$")
KINDS = {"package": "cpu_package", "dram": "dram"}
# Without a readable limit, no package or DRAM zone of a server CPU draws more than this.
MAX_POWER_CEILING_W = 1000.0
LIMIT_MARGIN = 2.0  # short-term excursions above the long- and short-term limits the zone states


@dataclass(frozen=True)
class Zone:
    path: Path
    name: str
    max_energy_range_uj: int
    max_power_w: float = MAX_POWER_CEILING_W  # the most it can draw: bounds the wraps between reads

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def _max_power_w(zone_dir: Path) -> float:
    """The zone's highest stated limit (`constraint_<i>_max_power_uw`, `..._power_limit_uw`) times a
    margin, or the ceiling where it states none."""
    limits_uw = []
    for path in zone_dir.glob("constraint_*_*_uw"):
        if path.name.endswith(("_max_power_uw", "_power_limit_uw")):
            try:
                limits_uw.append(int(path.read_text().strip()))
            except (OSError, ValueError):
                continue
    limits_uw = [x for x in limits_uw if x > 0]
    return max(limits_uw) / UJ_PER_J * LIMIT_MARGIN if limits_uw else MAX_POWER_CEILING_W


def _zone_kind(dir_name: str, zone_name: str) -> str | None:
    """`package` / `dram` for zones we count, None for those another zone already covers."""
    if zone_name == "dram":
        return "dram"
    top_level = dir_name.count(":") == 1
    if top_level and zone_name.startswith("package"):
        return "package"
    return None  # core, uncore (inside a package), psys (the whole platform), unknown


def _zone_dirs(root: Path) -> list[Path]:
    """Zone folders, whether listed flat (symlinks, as in /sys/class/powercap) or nested (as
    under /sys/devices/virtual/powercap); only `intel-rapl*` names are entered, since sysfs
    links elsewhere loop back."""
    found: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            children = sorted(folder.iterdir())
        except OSError:
            continue
        for child in children:
            if child.name == "intel-rapl" and child.is_dir():
                stack.append(child)  # the control type folder holds the zones
            elif _ZONE_DIR.match(child.name) and child.is_dir():
                found.append(child)
                stack.append(child)
    return found


def discover(root: Path, kind: str) -> tuple[list[Zone], list[str]]:
    """Zones of one kind under `root`, and the problems met (unreadable or malformed zones)."""
    zones: list[Zone] = []
    problems: list[str] = []
    seen: set[Path] = set()
    if not root.is_dir():
        return [], [f"{root} does not exist (no powercap in this kernel or container)"]
    for zone_dir in _zone_dirs(root):
        energy_file = zone_dir / "energy_uj"
        real = zone_dir.resolve()
        if real in seen:
            continue  # /sys/class/powercap lists nested zones flat as well
        seen.add(real)
        try:
            name = (zone_dir / "name").read_text().strip()
            if _zone_kind(zone_dir.name, name) != kind:
                continue
            zone = Zone(zone_dir, name, int((zone_dir / "max_energy_range_uj").read_text().strip()),
                        _max_power_w(zone_dir))
            zone.read_uj()
        except PermissionError:
            problems.append(f"{energy_file} is not readable (root-only since Linux 5.10; run as root "
                            "or grant read access)")
            continue
        except (OSError, ValueError) as err:
            problems.append(f"{zone_dir}: {err}")
            continue
        zones.append(zone)
    return zones, problems


class RaplMeter(Meter):
    """Sum of the RAPL zones of one kind (`package` or `dram`) over all sockets."""

    method = "rapl"

    def __init__(self, kind: str = "package", root: Path | str = DEFAULT_ROOT, clock: Callable[[], float] = time.perf_counter):
        if kind not in KINDS:
            raise ValueError(f"RAPL kind must be one of {sorted(KINDS)}, got {kind!r}")
        self.domain = KINDS[kind]
        self._clock = clock
        self.zones, self.problems = discover(Path(root), kind)
        self._start: tuple[float, float] | None = None
        # Per zone: (last raw value, when it was read, energy counted since the first read).
        self._last: list[tuple[int, float, int] | None] = [None] * len(self.zones)
        self._guard = threading.Lock()  # the recorder thread polls while the main thread may start/stop

    @property
    def detail(self) -> str:
        return "+".join(f"{z.path.name}({z.name})" for z in self.zones)

    def is_available(self) -> bool:
        return bool(self.zones) and not self.problems

    def why_unavailable(self) -> str:
        return "; ".join(self.problems) or f"no RAPL {self.domain} zone found"

    def _read_zone(self, i: int) -> int:
        """Energy (uJ) zone i counted since this meter's first read of it."""
        zone = self.zones[i]
        try:
            raw = zone.read_uj()
        except PermissionError as err:
            raise MeterUnavailable(f"RAPL counter became unreadable: {err}") from err
        except (OSError, ValueError) as err:
            raise MeterFault(f"{zone.path.name} ({zone.name}): {type(err).__name__}: {err}") from err
        now = self._clock()
        last = self._last[i]
        if last is None:
            self._last[i] = (raw, now, 0)
            return 0
        last_raw, last_s, total_uj = last
        delta_uj = raw - last_raw
        if delta_uj < 0:  # wrapped past max_energy_range_uj
            delta_uj += zone.max_energy_range_uj
        most_uj = (now - last_s) * zone.max_power_w * UJ_PER_J
        if delta_uj + zone.max_energy_range_uj <= most_uj:
            # Counting resumes from this read: a window across the gap is redone; one after it is whole.
            self._last[i] = (raw, now, total_uj)
            raise MeterFault(f"{zone.path.name} ({zone.name}): {now - last_s:.3g} s since its last read at up to "
                             f"{zone.max_power_w:g} W could hold {int(most_uj // zone.max_energy_range_uj)} wraps of "
                             f"{zone.max_energy_range_uj} uJ: its energy cannot be counted")
        self._last[i] = (raw, now, total_uj + delta_uj)
        return total_uj + delta_uj

    def _read_all(self) -> float:
        with self._guard:
            return sum(self._read_zone(i) for i in range(len(self.zones))) / UJ_PER_J

    def poll(self) -> float:
        """Energy counted since the first read, wraps unfolded (a running total, in J)."""
        return self._read_all()

    def start(self) -> None:
        self._start = (self._clock(), self._read_all())

    def stop(self) -> Reading:
        if self._start is None:
            raise RuntimeError("stop() before start()")
        now_j, now = self._read_all(), self._clock()
        t0, start_j = self._start
        self._start = None
        return Reading(now_j - start_j, now - t0, self.domain, self.method)
