"""The pynvml calls the harness makes, answered from an `EmulatedDevice`.

The total-energy counter (mJ, an integer, as NVML gives it) changes only at update edges, every
`period_s` from a phase of its own; the value published at an edge covers energy up to
`lag_s` before it. Counter modes:
- `exact`: each update adds the true energy since the previous one;
- `sliced`: each update adds the average power over the last `slice_s` of its period times the
  period, i.e. it senses only a slice of each period (25 ms of 100 ms on A100/H100 per Yang et
  al., SC24), exact only while power is steady.
Instant power (`nvmlDeviceGetPowerUsage`, field `NVML_FI_DEV_POWER_INSTANT`) is the average over
what the last update sensed. Faults are injected per function (`Fault`), and the counter can be
reset mid-run, as a driver reload does: at the first read after `reset_at_s` that follows another
read within `RESET_BETWEEN_READS_S`, so that it falls between two polls of one meter, or at the
next read after `reset_counter()` (which a test calls from inside a measuring window: on a real
clock a busy machine may stretch the gaps between windows past any fixed instant, and a reset in
such a gap is seen by no window, nor harmful to any).

GPU utilisation is sampled every `util_period_s`: each sample is the share of its period in which
a kernel ran, of this device's work or of another tenant's (`other_tenant_busy`, seen in
utilisation only). Sample timestamps are wall-clock microseconds (`wall_s`, `time.time()`'s
domain, as NVML's); `samples_supported=False` makes `nvmlDeviceGetSamples` unsupported, as on
GPUs that keep no samples.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.measure.emulator.device import EmulatedDevice

COUNTER_MODES = ("exact", "sliced")
MJ_PER_J = 1000.0
US_PER_S = 1e6
SAMPLES_KEPT = 100  # NVML keeps recent samples in a ring buffer
RESET_BETWEEN_READS_S = 0.002  # a reset lands between two reads at most this far apart (one meter polling)


class NVMLError(Exception):
    def __init__(self, value: str = "Unknown Error"):
        super().__init__(value)
        self.value = value


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_NoPermission(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801 - pynvml's name
    pass


@dataclass
class Fault:
    """`function` raises NVMLError on its first `calls` calls made `at_s` or more seconds after the
    emulator started."""

    function: str
    at_s: float = 0.0
    calls: int = 1
    message: str = "Unknown Error"


class _Value:
    def __init__(self, ui: int):
        self.uiVal = ui


class _FieldValue:
    def __init__(self, ret: int, ui: int):
        self.nvmlReturn, self.value = ret, _Value(ui)


class _Sample:
    def __init__(self, time_us: int, ui: int):
        self.timeStamp, self.sampleValue = time_us, _Value(ui)


class _Util:
    def __init__(self, gpu: int):
        self.gpu, self.memory = gpu, 0


class EmulatedNvml:
    """A pynvml-shaped object over one emulated GPU (index 0)."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotFound = NVMLError_NotFound
    NVML_GPU_UTILIZATION_SAMPLES, NVML_VALUE_TYPE_UNSIGNED_INT = 1, 1
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU, NVML_FI_DEV_POWER_INSTANT = 1, 2, 0, 186
    NVML_SUCCESS = 0
    UUID = "GPU-emulated-0000"

    def __init__(self, device: EmulatedDevice, period_s: float = 0.1, counter_mode: str = "exact",
                 lag_s: float = 0.0, slice_s: float | None = None, phase_s: float = 0.0,
                 power_limit_w: float = 700.0, base_mj: int = 123_456_789, faults: tuple[Fault, ...] = (),
                 reset_at_s: float | None = None, name: str = "Emulated GPU", sm_mhz: int = 1980,
                 mem_mhz: int = 2619, temp_c: float = 40.0, reasons: int = 0, util_period_s: float = 1 / 6,
                 samples_supported: bool = True, wall_start_s: float | None = None, telemetry_call_s: float = 0.0,
                 counter_call_s: float = 0.0, counter_call_after_s: float = 0.0):
        if counter_mode not in COUNTER_MODES:
            raise ValueError(f"counter_mode must be one of {COUNTER_MODES}, got {counter_mode!r}")
        if not period_s > 0 or lag_s < 0 or not util_period_s > 0:
            raise ValueError("period_s and util_period_s must be > 0 and lag_s >= 0")
        self.device, self.period_s, self.counter_mode, self.lag_s = device, period_s, counter_mode, lag_s
        self.slice_s = period_s / 4 if slice_s is None else slice_s
        if not 0 < self.slice_s <= period_s:
            raise ValueError("slice_s must be in (0, period_s]")
        self.power_limit_w, self.name, self.sm_mhz, self.mem_mhz = power_limit_w, name, sm_mhz, mem_mhz
        self.temp_c, self.reasons = temp_c, reasons
        self.faults = [Fault(**vars(f)) for f in faults]  # copies: their call budgets are spent
        self.reset_at_s = reset_at_s
        self.util_period_s, self.samples_supported = util_period_s, samples_supported
        # Wall time each telemetry call (clocks, temperature, reasons, power) takes, the GIL released
        # as ctypes does: on a virtualised GPU these calls took milliseconds (the lent H200, 2026-12-04).
        self.telemetry_call_s, self.counter_call_s = telemetry_call_s, counter_call_s  # the counter's read, likewise
        self.counter_call_after_s = counter_call_after_s  # ... from this device time on (a host loaded once work starts)
        self._others: list[tuple[float, float]] = []  # other tenants' busy spans (device clock)
        # Device clock -> wall clock; now by default, so `wall_s` follows `time.time()` on a real clock.
        self._wall_offset_s = (time.time() if wall_start_s is None else wall_start_s) - device.clock()
        self._t0 = device.start_s
        self._first_edge_s = self._t0 + phase_s % period_s
        self._base_j = base_mj / MJ_PER_J
        self._edges = 0  # edges folded into _counter_j
        self._counter_j = 0.0
        self._last_sensed_w = device.model.idle_w
        self._reset_offset_j: float | None = None
        self._reset_next_read = False
        self._last_read_s: float | None = None
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    # -- the counter ----------------------------------------------------------------------
    def edge_s(self, k: int) -> float:
        return self._first_edge_s + k * self.period_s

    def _sensed(self, k: int) -> tuple[float, float]:
        """(energy added, average power sensed) at edge k."""
        end = self.edge_s(k) - self.lag_s
        if self.counter_mode == "exact":
            energy = self.device.energy_j(end) - self.device.energy_j(end - self.period_s)
            return energy, energy / self.period_s
        power = (self.device.energy_j(end) - self.device.energy_j(end - self.slice_s)) / self.slice_s
        return power * self.period_s, power

    def _advance(self, now: float) -> None:
        last = math.floor((now - self._first_edge_s) / self.period_s)
        while self._edges <= last:
            added, self._last_sensed_w = self._sensed(self._edges)
            self._counter_j += added
            self._edges += 1

    def true_counter_j(self, now: float) -> float:
        with self._lock:
            self._advance(now)
            value = self._base_j + self._counter_j
            if self.reset_at_s is not None and now >= self._t0 + self.reset_at_s:
                polled = self._last_read_s is not None and now - self._last_read_s <= RESET_BETWEEN_READS_S
                if self._reset_offset_j is None and polled:
                    self._reset_offset_j = value  # the counter restarts from zero
            if self._reset_next_read:
                self._reset_offset_j = value  # (the raw count: the counter reads zero from here)
                self._reset_next_read = False
            if self._reset_offset_j is not None:
                value -= self._reset_offset_j
            self._last_read_s = now
            return value

    def reset_counter(self) -> None:
        """The counter restarts from zero at the next read (a driver reload now)."""
        with self._lock:
            self._reset_next_read = True

    # -- utilisation ----------------------------------------------------------------------
    def wall_s(self, t_s: float | None = None) -> float:
        """Wall-clock time (`time.time()`'s domain) of device-clock `t_s`, by default now."""
        return (self.device.clock() if t_s is None else t_s) + self._wall_offset_s

    def other_tenant_busy(self, start_s: float, end_s: float) -> None:
        """Another process runs kernels from `start_s` to `end_s` (device clock)."""
        self._others.append((start_s, end_s))

    def _busy_pct(self, end_s: float) -> int:
        """Share of the sample period ending at `end_s` in which any kernel ran, in %."""
        start_s = end_s - self.util_period_s
        spans = sorted(self.device.busy_spans(start_s, end_s) +
                       [(max(a, start_s), min(b, end_s)) for a, b in self._others if a < end_s and b > start_s])
        busy_s, reach_s = 0.0, start_s
        for a, b in spans:  # the union's length: tenants' spans may overlap ours
            if b > reach_s:
                busy_s += b - max(a, reach_s)
                reach_s = b
        return round(100 * busy_s / self.util_period_s)

    def _last_sample(self, now_s: float) -> int:
        """Index of the last sample taken by `now_s`; sample k ends k periods after the start."""
        return math.floor((now_s - self._t0) / self.util_period_s)

    def _sample_s(self, k: int) -> float:
        return self._t0 + k * self.util_period_s

    def _fault(self, function: str) -> None:
        self.calls[function] = self.calls.get(function, 0) + 1
        elapsed = self.device.clock() - self._t0
        for f in self.faults:
            if f.function == function and f.calls > 0 and elapsed >= f.at_s:
                f.calls -= 1
                raise NVMLError(f.message)

    # -- pynvml ---------------------------------------------------------------------------
    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names below
        self._fault("nvmlInit")

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._fault("nvmlDeviceGetHandleByIndex")
        if index != 0:
            raise NVMLError("Invalid Argument")
        return ("emulated", 0)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> Any:
        if uuid != self.UUID:
            raise NVMLError("Not Found")
        return ("emulated", 0)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self.name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self.UUID

    def nvmlSystemGetDriverVersion(self) -> str:
        return "emulated"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._fault("nvmlDeviceGetTotalEnergyConsumption")
        if self.counter_call_s > 0 and self.device.clock() - self._t0 >= self.counter_call_after_s:
            time.sleep(self.counter_call_s)
        return int(self.true_counter_j(self.device.clock()) * MJ_PER_J)

    def _sensed_power_w(self) -> float:
        with self._lock:
            self._advance(self.device.clock())
            return self._last_sensed_w

    def _slow(self) -> None:
        if self.telemetry_call_s > 0:
            time.sleep(self.telemetry_call_s)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._fault("nvmlDeviceGetPowerUsage")
        self._slow()
        return int(self._sensed_power_w() * 1000)

    def nvmlDeviceGetFieldValues(self, handle: Any, fields: list[int]) -> list[_FieldValue]:
        self._fault("nvmlDeviceGetFieldValues")
        self._slow()
        return [_FieldValue(0, int(self._sensed_power_w() * 1000)) if f == self.NVML_FI_DEV_POWER_INSTANT
                else _FieldValue(1, 0) for f in fields]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return int(self.power_limit_w * 1000)

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return int(self.power_limit_w * 1000)

    def nvmlDeviceGetClockInfo(self, handle: Any, which: int) -> int:
        self._fault("nvmlDeviceGetClockInfo")
        self._slow()
        return self.sm_mhz if which == self.NVML_CLOCK_SM else self.mem_mhz

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        self._slow()
        return int(self.temp_c)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        self._slow()
        return self.reasons

    def nvmlDeviceGetSamples(self, handle: Any, sampling_type: int, last_seen_us: int) -> tuple[int, list[_Sample]]:
        self._fault("nvmlDeviceGetSamples")
        if not self.samples_supported:
            raise NVMLError_NotSupported("Not Supported")
        if sampling_type != self.NVML_GPU_UTILIZATION_SAMPLES:
            raise NVMLError("Invalid Argument")
        last = self._last_sample(self.device.clock())
        stamped = ((int(round(self.wall_s(self._sample_s(k)) * US_PER_S)), k)
                   for k in range(max(1, last - SAMPLES_KEPT + 1), last + 1))
        samples = [_Sample(us, self._busy_pct(self._sample_s(k))) for us, k in stamped if us > last_seen_us]
        if not samples:
            raise NVMLError_NotFound("Not Found")  # as NVML answers when nothing is newer
        return self.NVML_VALUE_TYPE_UNSIGNED_INT, samples

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _Util:
        last = self._last_sample(self.device.clock())
        return _Util(self._busy_pct(self._sample_s(last)) if last >= 1 else 0)  # the latest sample's value

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list:
        return []
