"""GPU energy through NVML.

The total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ since driver load, Volta and
newer) is the measurement. Only GPUs without it fall back to integrating sampled power, labelled
`nvml_power_integration`: NVML power is an average over part of each period, so such integrals
are far less trustworthy for short windows (Yang et al., SC24).
"""
from __future__ import annotations

import threading
import time
from types import ModuleType
from typing import Any, Callable

from bench.meters.base import Meter, MeterUnavailable, Reading

MJ_PER_J = 1000.0
MW_PER_W = 1000.0


def open_gpu(nvml: ModuleType, index: int, uuid: str | None = None) -> Any:
    """NVML handle of the GPU that torch calls `index`, by UUID when known (CUDA_VISIBLE_DEVICES
    renumbers devices, NVML does not)."""
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as err:
        raise MeterUnavailable(f"NVML could not be initialised: {err}") from err
    if uuid:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid)
        except nvml.NVMLError:
            pass  # some drivers reject MIG/short UUID forms; fall back to the index
    return nvml.nvmlDeviceGetHandleByIndex(index)


class NvmlEnergyMeter(Meter):
    """Energy from the NVML total-energy counter, read at window edges."""

    method = "nvml_counter"

    def __init__(self, nvml: ModuleType, handle: Any, domain: str = "gpu", clock: Callable[[], float] = time.perf_counter):
        self._nvml, self._handle, self.domain, self._clock = nvml, handle, domain, clock
        self._start: tuple[float, float] | None = None

    @property
    def detail(self) -> str:
        try:
            name = self._nvml.nvmlDeviceGetName(self._handle)
        except self._nvml.NVMLError:
            name = "unknown"
        return f"nvmlDeviceGetTotalEnergyConsumption on {name}"

    def _counter_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / MJ_PER_J

    def is_available(self) -> bool:
        try:
            self._counter_j()
        except self._nvml.NVMLError:
            return False
        return True

    def poll(self) -> float:
        return self._counter_j()

    def start(self) -> None:
        self._start = (self._clock(), self._counter_j())

    def stop(self) -> Reading:
        if self._start is None:
            raise RuntimeError("stop() before start()")
        energy_j, now = self._counter_j(), self._clock()
        t0, e0 = self._start
        self._start = None
        return Reading(energy_j - e0, now - t0, self.domain, self.method)


def integrate_trapezoid(samples: list[tuple[float, float]]) -> float:
    """Energy in J of `(time_s, power_w)` samples, linear between samples."""
    return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))


class NvmlPowerMeter(Meter):
    """Trapezoidal integral of NVML power samples taken by a background thread (fallback only)."""

    method = "nvml_power_integration"

    def __init__(self, nvml: ModuleType, handle: Any, domain: str = "gpu", interval_s: float = 0.005,
                 clock: Callable[[], float] = time.perf_counter):
        self._nvml, self._handle, self.domain = nvml, handle, domain
        self._interval_s, self._clock = interval_s, clock
        self._samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def detail(self) -> str:
        return f"nvmlDeviceGetPowerUsage sampled every {self._interval_s * 1e3:.1f} ms"

    def _power_w(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / MW_PER_W

    def is_available(self) -> bool:
        try:
            self._power_w()
        except self._nvml.NVMLError:
            return False
        return True

    def poll(self) -> float:
        return self._power_w()

    def _sample(self) -> None:
        self._samples.append((self._clock(), self._power_w()))

    def _run(self) -> None:
        while not self._stop_event.wait(self._interval_s):
            self._sample()

    def start(self) -> None:
        self._samples = []
        self._stop_event.clear()
        self._sample()
        self._thread = threading.Thread(target=self._run, name="nvml-power", daemon=True)
        self._thread.start()

    def stop(self) -> Reading:
        if self._thread is None:
            raise RuntimeError("stop() before start()")
        self._stop_event.set()
        self._thread.join()
        self._thread = None
        self._sample()
        duration_s = self._samples[-1][0] - self._samples[0][0]
        return Reading(integrate_trapezoid(self._samples), duration_s, self.domain, self.method)

    def close(self) -> None:
        if self._thread is not None:
            self._stop_event.set()
            self._thread.join()
            self._thread = None


def gpu_meter(nvml: ModuleType, handle: Any, domain: str = "gpu") -> Meter:
    """The energy counter where the GPU has one, else the labelled power-integration fallback."""
    counter = NvmlEnergyMeter(nvml, handle, domain)
    if counter.is_available():
        return counter
    sampler = NvmlPowerMeter(nvml, handle, domain)
    if sampler.is_available():
        return sampler
    raise MeterUnavailable("this GPU reports neither total energy nor power through NVML")
