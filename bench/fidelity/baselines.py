"""Two common ways to measure energy per call, run beside our protocol on the same emulated GPU:

- `window`: a Zeus-style measurement window: read the energy counter, launch calls eagerly for
  `window_s`, synchronise, read it again; edges are wherever the reads fall.
- `power_integration`: sample NVML power every `sample_s` from a thread during the same kind of
  window and integrate it (trapezoid).

They are implemented from their published descriptions, not from their code.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

from bench.measure.meters.nvml import MJ_PER_J, MW_PER_W, integrate_trapezoid

WARMUP_S = 0.1


def _eager_window(call: Callable[[], None], sync: Callable[[], None], window_s: float,
                  clock: Callable[[], float]) -> tuple[int, float]:
    """Calls launched eagerly in chunks of about 10 ms (sized from one timed call, synchronised
    after each, as a careful benchmark loop does) until `window_s` has passed; returns (calls,
    elapsed)."""
    sync()
    t0 = clock()
    call()
    sync()
    chunk = max(1, round(0.01 / max(clock() - t0, 1e-9)))
    calls = 1
    while clock() - t0 < window_s:
        for _ in range(chunk):
            call()
        calls += chunk
        sync()
    return calls, clock() - t0


def window_energy_per_call_j(nvml, handle, call: Callable[[], None], sync: Callable[[], None],
                             window_s: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> float:
    _eager_window(call, sync, WARMUP_S, clock)
    sync()
    e0 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    calls, _ = _eager_window(call, sync, window_s, clock)
    e1 = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    return (e1 - e0) / MJ_PER_J / calls


def power_integration_energy_per_call_j(nvml, handle, call: Callable[[], None], sync: Callable[[], None],
                                        window_s: float = 1.0, sample_s: float = 0.005,
                                        clock: Callable[[], float] = time.perf_counter) -> float:
    _eager_window(call, sync, WARMUP_S, clock)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((clock(), nvml.nvmlDeviceGetPowerUsage(handle) / MW_PER_W))
            stop.wait(sample_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        calls, _ = _eager_window(call, sync, window_s, clock)
    finally:
        stop.set()
        thread.join()
    samples.append((clock(), nvml.nvmlDeviceGetPowerUsage(handle) / MW_PER_W))
    return integrate_trapezoid(samples) / calls
