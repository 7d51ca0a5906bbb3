"""GPU telemetry and what a window saw of it (the recorder thread, `recorder.py`, samples it),
and the busy check before a point.

- SM and memory clocks, temperature and clock-event (throttle) reasons, observed in every clock
  mode, and instant power (NVML field `NVML_FI_DEV_POWER_INSTANT`, else `nvmlDeviceGetPowerUsage`)
  integrated over the window as a cross-check of the energy counter.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from bench.measure.meters.nvml import MW_PER_W

# Clock-event reasons that mean the GPU ran slower than asked (power, thermal, hardware
# slowdowns); idle, application-clock and display settings are not throttling.
THROTTLE_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
THROTTLE_MASK = sum(THROTTLE_REASONS)


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


@dataclass(frozen=True)
class GpuSample:
    time_s: float
    sm_mhz: float
    mem_mhz: float
    temp_c: float
    reasons: int
    power_w: float


class GpuTelemetry:
    """Reads one GPU's clocks, temperature, clock-event reasons and instant power."""

    def __init__(self, nvml: ModuleType, handle: Any):
        self.nvml, self.handle = nvml, handle
        self._field = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        self.power_method = "nvml_field_power_instant" if self._instant_power_w() is not None else "nvml_power_usage"

    def _instant_power_w(self) -> float | None:
        if self._field is None:
            return None
        try:
            value = self.nvml.nvmlDeviceGetFieldValues(self.handle, [self._field])[0]
        except self.nvml.NVMLError:
            return None
        if getattr(value, "nvmlReturn", 0) != 0:
            return None
        return value.value.uiVal / MW_PER_W

    def power_w(self) -> float:
        if self.power_method == "nvml_field_power_instant":
            power = self._instant_power_w()
            if power is not None:
                return power
        return self.nvml.nvmlDeviceGetPowerUsage(self.handle) / MW_PER_W

    def reasons(self) -> int:
        getter = getattr(self.nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            self.nvml.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(getter(self.handle))

    def temperature_c(self) -> float:
        return float(self.nvml.nvmlDeviceGetTemperature(self.handle, self.nvml.NVML_TEMPERATURE_GPU))

    def sample(self, now_s: float) -> GpuSample:
        nvml, h = self.nvml, self.handle
        return GpuSample(now_s, float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)),
                         float(nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_MEM)),
                         self.temperature_c(), self.reasons(), self.power_w())


@dataclass(frozen=True)
class WindowStats:
    """What the monitor saw during one window."""

    updates: dict[str, int]  # meter domain -> counter intervals the window's energy spans
    samples: int
    sm_mhz_mean: float = math.nan
    mem_mhz_mean: float = math.nan
    temp_c_start: float = math.nan
    temp_c_end: float = math.nan
    reasons: int = 0
    power_energy_j: float = math.nan  # instant power integrated over the samples (cross-check)
    power_span_s: float = math.nan  # time from the first sample to the last
    polls: int = 0  # times the monitor looked at the meters

    @property
    def power_w(self) -> float:
        return self.power_energy_j / self.power_span_s if self.power_span_s > 0 else math.nan

    @property
    def throttled(self) -> bool:
        return bool(self.reasons & THROTTLE_MASK)


@dataclass(frozen=True)
class GpuActivity:
    """What else was running on the GPU just before a point, while this process was idle on it."""

    utilization_pct_max: int
    other_pids: tuple[int, ...]

    @property
    def busy(self) -> bool:
        # Utilisation is the evidence: in containers, process lists show host PIDs, so this
        # process can look like another one. The PIDs are recorded for the reader.
        return self.utilization_pct_max > 0


def gpu_activity(nvml: ModuleType, handle: Any, own_pid: int, samples: int = 5, interval_s: float = 0.02,
                 sleep: Callable[[float], None] = time.sleep) -> GpuActivity:
    utilization = []
    for i in range(samples):
        if i:
            sleep(interval_s)
        utilization.append(int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError:
        procs = []
    return GpuActivity(max(utilization), tuple(sorted(int(p.pid) for p in procs if int(p.pid) != own_pid)))
