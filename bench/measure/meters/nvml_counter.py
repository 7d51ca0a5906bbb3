"""GPU energy from the NVML total-energy counter (`nvmlDeviceGetTotalEnergyConsumption`, mJ since
driver load, Volta and newer): the measurement, `nvml_counter`."""
from __future__ import annotations

import time
from types import ModuleType
from typing import Any, Callable

from bench.measure.meters.base import Meter, Reading
from bench.measure.meters.nvml import MJ_PER_J, MW_PER_W


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

    @property
    def max_power_w(self) -> float | None:
        """The enforced power limit: a window averaging more than this is implausible."""
        try:
            return self._nvml.nvmlDeviceGetEnforcedPowerLimit(self._handle) / MW_PER_W
        except (self._nvml.NVMLError, AttributeError):
            return None

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
