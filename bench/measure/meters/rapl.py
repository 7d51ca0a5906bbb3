"""Host energy from Linux powercap RAPL (`/sys/class/powercap`, Intel, and AMD since Linux 5.8).

Zones nest: `intel-rapl:0` is a package, `intel-rapl:0:0` its core sub-zone, which the package
already counts. We sum the package zones (domain `cpu_package`) and, separately, the `dram`
zones (domain `dram`, not part of the package counter); core/uncore sub-zones and `psys` (the
whole platform, overlapping both) are skipped so nothing is counted twice. `intel-rapl-mmio`
zones duplicate the MSR package zones and are skipped too. Counters wrap at
`max_energy_range_uj`; a window shorter than one wrap period is corrected exactly.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bench.measure.meters.base import Meter, MeterUnavailable, Reading

UJ_PER_J = 1e6
DEFAULT_ROOT = Path("/sys/class/powercap")
_ZONE_DIR = re.compile(r"^intel-rapl(:\d+)+$")
KINDS = {"package": "cpu_package", "dram": "dram"}


@dataclass(frozen=True)
class Zone:
    path: Path
    name: str
    max_energy_range_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


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
            zone = Zone(zone_dir, name, int((zone_dir / "max_energy_range_uj").read_text().strip()))
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
        self._start: tuple[float, list[int]] | None = None

    @property
    def detail(self) -> str:
        return "+".join(f"{z.path.name}({z.name})" for z in self.zones)

    def is_available(self) -> bool:
        return bool(self.zones) and not self.problems

    def why_unavailable(self) -> str:
        return "; ".join(self.problems) or f"no RAPL {self.domain} zone found"

    def _read_all(self) -> list[int]:
        try:
            return [z.read_uj() for z in self.zones]
        except PermissionError as err:
            raise MeterUnavailable(f"RAPL counter became unreadable: {err}") from err

    def poll(self) -> float:
        return sum(self._read_all()) / UJ_PER_J

    def start(self) -> None:
        self._start = (self._clock(), self._read_all())

    def stop(self) -> Reading:
        if self._start is None:
            raise RuntimeError("stop() before start()")
        now_uj, now = self._read_all(), self._clock()
        t0, start_uj = self._start
        self._start = None
        total_uj = 0
        for zone, e0, e1 in zip(self.zones, start_uj, now_uj):
            delta = e1 - e0
            if delta < 0:  # the counter wrapped past max_energy_range_uj
                delta += zone.max_energy_range_uj
            total_uj += delta
        return Reading(total_uj / UJ_PER_J, now - t0, self.domain, self.method)
