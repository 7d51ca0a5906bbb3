"""The fidelity grid: each (call duration, update period, counter mode) point on a fresh emulated
GPU, measured by our protocol and by the two baselines, against the true energy per call."""
from __future__ import annotations

import math
import random
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from bench.fidelity import baselines
from bench.measure.emulator import COUNTER_MODES, EmulatedDevice, EmulatedNvml, PowerModel
from bench.measure.meters.nvml_counter import NvmlEnergyMeter
from bench.measure.protocol import Protocol, measure_point

PROTOCOLS = ("ours", "window", "power_integration")
CALL_S = (5e-6, 5e-5, 5e-4, 5e-3, 5e-2, 1e-1)
PERIOD_S = (0.02, 0.1)
COLUMNS = ["protocol", "counter_mode", "call_s", "period_s", "true_energy_per_call_j", "measured_energy_per_call_j",
           "rel_error", "cv", "measure_s"]
# Targets for our protocol at every point (issue 13): |rel_error|, cv, and measure_s at a 100 ms period.
TARGET_REL_ERROR, TARGET_CV, TARGET_MEASURE_S = 0.01, 0.01, 6.0


@dataclass(frozen=True)
class Emulation:
    """The emulated GPU: an H100-like idle and busy power, a 30 ms ramp, a counter lagging 10 ms,
    eager launches costing 5 us of host time."""

    idle_w: float = 70.0
    busy_w: float = 500.0
    ramp_s: float = 0.03
    lag_s: float = 0.01
    launch_s: float = 5e-6
    power_limit_w: float = 700.0


@dataclass(frozen=True)
class Grid:
    call_s: tuple[float, ...] = CALL_S
    period_s: tuple[float, ...] = PERIOD_S
    counter_modes: tuple[str, ...] = COUNTER_MODES
    protocols: tuple[str, ...] = PROTOCOLS
    baseline_repeats: int = 3
    baseline_window_s: float = 1.0
    seed: int = 0
    emulation: Emulation = field(default_factory=Emulation)


def _gpu(call_s: float, period_s: float, mode: str, emu: Emulation, phase_s: float):
    device = EmulatedDevice(call_s, PowerModel(emu.idle_w, emu.busy_w, emu.ramp_s), launch_s=emu.launch_s)
    nvml = EmulatedNvml(device, period_s=period_s, counter_mode=mode, lag_s=emu.lag_s, phase_s=phase_s,
                        power_limit_w=emu.power_limit_w)
    return device, nvml, nvml.nvmlDeviceGetHandleByIndex(0)


def measure_one(protocol: str, call_s: float, period_s: float, mode: str, grid: Grid, phase_s: float
                ) -> dict[str, object]:
    device, nvml, handle = _gpu(call_s, period_s, mode, grid.emulation, phase_s)
    t0 = time.perf_counter()
    if protocol == "ours":
        # As on a GPU (session.py): chunks queued ahead behind a mark, and `done` (a CUDA event's
        # query) to see a device run dry and to take calls at its own rate. Without `done` this ran
        # a mode no GPU measurement uses (calls interpolated between late boundaries, dry runs unseen).
        result = measure_point(device.call, [NvmlEnergyMeter(nvml, handle)], Protocol(), sync=device.sync,
                               graph=lambda n: (lambda: device.replay(n)), mark=device.mark, wait=device.wait,
                               done=device.done)
        measured, spread = result.domains[0].energy_per_call_j, result.domains[0].energy_per_call_j_cv
    else:
        fn: Callable[..., float] = (baselines.window_energy_per_call_j if protocol == "window"
                                    else baselines.power_integration_energy_per_call_j)
        values = [fn(nvml, handle, device.call, device.sync, grid.baseline_window_s)
                  for _ in range(grid.baseline_repeats)]
        measured = statistics.median(values)
        mean = statistics.fmean(values)
        spread = statistics.stdev(values) / abs(mean) if len(values) > 1 and mean else math.nan
    truth = device.true_energy_per_call_j
    return {"protocol": protocol, "counter_mode": mode, "call_s": call_s, "period_s": period_s,
            "true_energy_per_call_j": truth, "measured_energy_per_call_j": measured,
            "rel_error": measured / truth - 1, "cv": spread, "measure_s": time.perf_counter() - t0}


def run(grid: Grid, progress: Callable[[dict[str, object]], None] = lambda row: None) -> list[dict[str, object]]:
    rng = random.Random(grid.seed)
    rows = []
    for period_s in grid.period_s:
        for mode in grid.counter_modes:
            for call_s in grid.call_s:
                phase_s = rng.uniform(0, period_s)  # where the counter's edges fall: unknown to every protocol
                for protocol in grid.protocols:
                    row = measure_one(protocol, call_s, period_s, mode, grid, phase_s)
                    rows.append(row)
                    progress(row)
    return rows


def meets_targets(row: dict[str, object]) -> bool:
    return (abs(float(row["rel_error"])) <= TARGET_REL_ERROR and float(row["cv"]) <= TARGET_CV
            and (float(row["period_s"]) < 0.1 or float(row["measure_s"]) <= TARGET_MEASURE_S))


def settings(grid: Grid) -> dict[str, object]:
    return {**asdict(grid), "protocol_settings": asdict(Protocol())}
