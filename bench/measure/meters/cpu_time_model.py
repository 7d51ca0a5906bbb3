"""Modelled host CPU energy for machines without RAPL: this process's CPU time x power per core.

Power per core comes from the CPU's TDP in codecarbon's bundled table
(`codecarbon/data/hardware/cpu_power.csv`) divided by the part's core count. Where the part or
its core count is unknown (common in VMs, which hide the exact model), codecarbon's own default
of 4 W per thread is used and the method says so. Either way the value is an estimate and is
labelled `model:...`, never reported as a measurement.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from bench.common.cpu_tdp import TdpMatch, lookup_tdp, normalise, tdp_table  # noqa: F401 (re-exported)
from bench.measure.meters.base import Meter, Reading

# codecarbon's fallback when a CPU is not in its table (codecarbon.core.cpu.DEFAULT_POWER_PER_CORE).
CODECARBON_DEFAULT_W_PER_THREAD = 4.0



def cores_of_part(cpu_name: str) -> int | None:
    """Core count printed in the part name (AMD writes e.g. "96-Core Processor")."""
    found = re.search(r"\b(\d+)-Core\b", cpu_name, re.IGNORECASE)
    return int(found.group(1)) if found else None


def os_cores_per_socket(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """Physical cores per socket as the OS sees them; None inside a VM, where the guest's vCPU
    count says nothing about the part whose TDP we divide."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    if re.search(r"^flags\s*:.*\bhypervisor\b", text, re.MULTILINE):
        return None
    cores = re.search(r"^cpu cores\s*:\s*(\d+)", text, re.MULTILINE)
    return int(cores.group(1)) if cores else None


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


@dataclass(frozen=True)
class CorePower:
    """Power per busy core and how it was derived."""

    w_per_core: float
    basis: str


def core_power(cpu_name: str, table: pd.DataFrame, tdp_w: float | None = None, cores: int | None = None) -> CorePower:
    """Per-core power from a TDP (given, or looked up) and a core count (given, or in the name)."""
    source = "given"
    if tdp_w is None:
        match = lookup_tdp(cpu_name, table)
        if match is not None:
            tdp_w, source = match.tdp_w, f"codecarbon cpu_power.csv {match.how} '{match.matched}'"
    cores = cores or cores_of_part(cpu_name)
    if tdp_w is not None and cores:
        return CorePower(tdp_w / cores, f"TDP {tdp_w:g} W ({source}) / {cores} cores")
    missing = "TDP" if tdp_w is None else "core count"
    return CorePower(
        CODECARBON_DEFAULT_W_PER_THREAD,
        f"codecarbon default {CODECARBON_DEFAULT_W_PER_THREAD:g} W per thread ({missing} of '{cpu_name}' unknown)",
    )


class CpuTimeModelMeter(Meter):
    """Energy = CPU time of this process (all its threads) x power per core. Idle draw of the
    host is outside the model, so its idle power is ~0 and dynamic = total."""

    domain = "cpu"
    method = "model:process_cpu_time_x_tdp_per_core"
    continuous = True

    def __init__(self, power: CorePower, cpu_time: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.perf_counter):
        self._power, self._cpu_time, self._clock = power, cpu_time, clock
        self._start: tuple[float, float] | None = None

    @property
    def detail(self) -> str:
        return f"{self._power.w_per_core:.3g} W per busy core: {self._power.basis}"

    def is_available(self) -> bool:
        return True

    def poll(self) -> float:
        return self._cpu_time() * self._power.w_per_core

    def start(self) -> None:
        self._start = (self._clock(), self._cpu_time())

    def stop(self) -> Reading:
        if self._start is None:
            raise RuntimeError("stop() before start()")
        cpu_s, now = self._cpu_time(), self._clock()
        t0, cpu0 = self._start
        self._start = None
        return Reading((cpu_s - cpu0) * self._power.w_per_core, now - t0, self.domain, self.method)
