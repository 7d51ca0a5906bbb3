"""GPU telemetry and what a window saw of it (the recorder thread, `recorder.py`, samples it),
and the busy check before a point.

- SM and memory clocks, temperature and clock-event (throttle) reasons, observed in every clock
  mode, and instant power (NVML field `NVML_FI_DEV_POWER_INSTANT`, else `nvmlDeviceGetPowerUsage`)
  integrated over the window as a cross-check of the energy counter.
- The busy check: utilisation since this process's own work on the GPU ended (NVML's samples,
  else its current rate once the longest sample period has passed), and other compute PIDs.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from bench.measure.meters.nvml import MW_PER_W

# Clock-event reasons that mean the GPU ran slower than its clocks allow (power, thermal, hardware
# slowdowns); idle, application-clock and display settings are not throttling.
THROTTLE_REASONS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
POWER_CAP = 0x4
# The power cap is not a fault of the measurement: a compute-bound kernel on an H100 or H200 runs
# at the board's power limit in steady state (seen on the lent H200, 2026-12-04: every GEMM-heavy
# point at 693-695 W of its 700 W limit, SM clocks 1450-1630 MHz), as it does in service, so such a
# point is kept and labelled `power_capped` (with the limit in force), never dropped as `throttled`.
# Thermal, hardware and power-brake slowdowns are: the GPU ran slower than its own limit allows.
THROTTLE_MASK = sum(THROTTLE_REASONS) & ~POWER_CAP


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

    @property
    def power_capped(self) -> bool:
        return bool(self.reasons & POWER_CAP)


# NVML's utilisation is the share of its last sample period in which a kernel ran; the period is
# 1/6 s to 1 s depending on the GPU.
UTIL_PERIOD_MAX_S = 1.0
US_PER_S = 1e6


@dataclass(frozen=True)
class GpuActivity:
    """What else was running on the GPU just before a point, while this process was idle on it."""

    utilization_pct_max: int
    other_pids: tuple[int, ...]
    method: str  # nvml_utilization_samples | nvml_utilization_rates_after_1s

    @property
    def busy(self) -> bool:
        # Utilisation is the evidence: in containers, process lists show host PIDs, so this
        # process can look like another one. The PIDs are recorded for the reader.
        return self.utilization_pct_max > 0


def utilization_period_s(timestamps_us: list[int]) -> float:
    """NVML's utilisation sample period: the median spacing of its samples, at most 1 s."""
    gaps_us = [b - a for a, b in zip(timestamps_us, timestamps_us[1:]) if b > a]
    return min(statistics.median(gaps_us) / US_PER_S, UTIL_PERIOD_MAX_S) if gaps_us else UTIL_PERIOD_MAX_S


def utilization_samples_pct(nvml: ModuleType, handle: Any, since_s: float) -> list[int] | None:
    """Utilisation (%) of the samples NVML holds whose period began at or after `since_s`
    (wall clock); None where the GPU keeps no samples."""
    get_samples = getattr(nvml, "nvmlDeviceGetSamples", None)
    if get_samples is None:
        return None
    # Ask from before `since_s` too, so that the period is known before several new samples exist.
    last_seen_us = max(0, int((since_s - 2 * UTIL_PERIOD_MAX_S) * US_PER_S))
    try:
        _, samples = get_samples(handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, last_seen_us)
    except getattr(nvml, "NVMLError_NotFound", ()):  # none newer than last_seen_us yet
        return []
    except nvml.NVMLError:
        return None
    samples = sorted(samples, key=lambda sample: sample.timeStamp)
    period_s = utilization_period_s([sample.timeStamp for sample in samples])
    # A sample at t covers (t - period, t]: it is clear of our work only from since + period on.
    return [int(sample.sampleValue.uiVal) for sample in samples if sample.timeStamp / US_PER_S >= since_s + period_s]


def gpu_activity(nvml: ModuleType, handle: Any, own_pid: int, own_idle_since_s: float = 0.0, samples: int = 3,
                 deadline_s: float = 1.5, interval_s: float = 0.05, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> GpuActivity:
    """Utilisation on the GPU since this process's own work on it ended (`own_idle_since_s`, wall
    clock; 0: it has done none), and the compute PIDs other than ours.

    Right after our own kernels, utilisation still shows them: only samples whose period began
    after they ended count, polled until `samples` of them exist or `deadline_s` has passed. Where
    the GPU keeps no samples (or none came), the current rate is read once the longest period
    has passed since our work ended."""
    deadline = clock() + deadline_s
    counted = utilization_samples_pct(nvml, handle, own_idle_since_s)
    while counted is not None and len(counted) < samples and clock() < deadline:
        sleep(interval_s)
        counted = utilization_samples_pct(nvml, handle, own_idle_since_s)
    if counted:
        utilization_pct_max, method = max(counted), "nvml_utilization_samples"
    else:
        wait_s = own_idle_since_s + UTIL_PERIOD_MAX_S - clock()
        if wait_s > 0:
            sleep(wait_s)
        rates = []
        for i in range(samples):
            if i:
                sleep(interval_s)
            rates.append(int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu))
        utilization_pct_max, method = max(rates), "nvml_utilization_rates_after_1s"
    try:
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError:
        procs = []
    return GpuActivity(utilization_pct_max, tuple(sorted(int(p.pid) for p in procs if int(p.pid) != own_pid)), method)
