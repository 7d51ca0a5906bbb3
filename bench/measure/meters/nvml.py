"""What both NVML meters share: opening the GPU by UUID, driver units, power integration.

The meters are one per file: `nvml_counter.py` (the total-energy counter, the measurement) and
`nvml_power.py` (integrated sampled power, the labelled fallback for GPUs without the counter).
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from bench.measure.meters.base import MeterUnavailable

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


def integrate_trapezoid(samples: list[tuple[float, float]]) -> float:
    """Energy in J of `(time_s, power_w)` samples, linear between samples."""
    return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(samples, samples[1:]))
