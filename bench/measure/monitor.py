"""What happens inside a measurement window, seen by a polling thread.

- Each meter's raw value is polled so the number of updates the window actually saw is known
  (a window sized from the update period can still see too few if the counter stalls).
- On a GPU: SM and memory clocks, temperature and clock-event (throttle) reasons, observed in
  every clock mode, and instant power (NVML field `NVML_FI_DEV_POWER_INSTANT`, else
  `nvmlDeviceGetPowerUsage`) integrated over the window as a cross-check of the energy counter.
"""
from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Sequence

from bench.measure.meters.base import Meter
from bench.measure.meters.nvml import MW_PER_W, integrate_trapezoid

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

    updates: dict[str, int]  # meter domain -> value changes seen
    samples: int
    sm_mhz_mean: float = math.nan
    mem_mhz_mean: float = math.nan
    temp_c_start: float = math.nan
    temp_c_end: float = math.nan
    reasons: int = 0
    power_energy_j: float = math.nan  # instant power integrated over the samples (cross-check)
    power_span_s: float = math.nan  # time from the first sample to the last
    polls: int = 0  # times the monitor looked at the meters

    def updates_at_least(self, domain: str, elapsed_s: float, period_s: float) -> int:
        """How many updates of `domain` the window had, at least. When every poll saw a change,
        the meter outpaced the monitor (a continuous meter such as process CPU time, or a
        monitor starved of the GIL by the kernel): the count says how often we looked, not how
        often it updated, and the window's length over the meter's measured update period is
        the better lower bound."""
        seen = self.updates[domain]
        if self.polls and seen >= self.polls and period_s > 0:
            return max(seen, int(elapsed_s / period_s))
        return seen

    @property
    def power_w(self) -> float:
        return self.power_energy_j / self.power_span_s if self.power_span_s > 0 else math.nan

    @property
    def throttled(self) -> bool:
        return bool(self.reasons & THROTTLE_MASK)


class WindowMonitor:
    """A thread that polls meters and GPU telemetry every `interval_s` between start() and stop()."""

    def __init__(self, meters: Sequence[Meter], gpu: GpuTelemetry | None = None, interval_s: float = 0.01,
                 clock: Callable[[], float] = time.perf_counter):
        self.meters, self.gpu, self.interval_s, self.clock = list(meters), gpu, interval_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: list[float] = []
        self._updates: list[int] = []
        self._polls = 0
        self._samples: list[GpuSample] = []

    def _poll(self) -> None:
        self._polls += 1
        for i, meter in enumerate(self.meters):
            value = meter.poll()
            if value != self._last[i]:
                self._updates[i] += 1
                self._last[i] = value
        if self.gpu is not None:
            self._samples.append(self.gpu.sample(self.clock()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll()

    def start(self) -> None:
        self._last = [m.poll() for m in self.meters]
        self._updates = [0] * len(self.meters)
        self._polls = 0
        self._samples = [self.gpu.sample(self.clock())] if self.gpu is not None else []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="window-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> WindowStats:
        if self._thread is None:
            raise RuntimeError("stop() before start()")
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._poll()  # a last look, so the window's end is covered
        updates = {m.domain: n for m, n in zip(self.meters, self._updates)}
        s = self._samples
        if not s:
            return WindowStats(updates, 0, polls=self._polls)
        reasons = 0
        for sample in s:
            reasons |= sample.reasons
        return WindowStats(
            updates, len(s),
            sm_mhz_mean=statistics.fmean(x.sm_mhz for x in s), mem_mhz_mean=statistics.fmean(x.mem_mhz for x in s),
            temp_c_start=s[0].temp_c, temp_c_end=s[-1].temp_c, reasons=reasons,
            power_energy_j=integrate_trapezoid([(x.time_s, x.power_w) for x in s]) if len(s) > 1 else math.nan,
            power_span_s=s[-1].time_s - s[0].time_s, polls=self._polls,
        )

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None


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
