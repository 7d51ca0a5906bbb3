"""GPU energy by integrating sampled NVML power (`nvml_power_integration`), only for GPUs without
the energy counter: NVML power is an average over part of each period, so such integrals are far
less trustworthy for short windows (Yang et al., SC24)."""
from __future__ import annotations

import threading
import time
from types import ModuleType
from typing import Any, Callable

from bench.measure.meters.base import Meter, Reading
from bench.measure.meters.nvml import MW_PER_W, integrate_trapezoid


class NvmlPowerMeter(Meter):
    """Trapezoidal integral of NVML power samples taken by a background thread (fallback only)."""

    method = "nvml_power_integration"
    cumulative = False  # poll() is power: the protocol starts and stops it at window boundaries

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
