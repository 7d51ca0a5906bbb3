"""The measurement protocol for one point.

1. Warm up (JIT compilation and autotuning happen here, outside every window) and estimate the
   time of one call from batches of calls long enough to hide timer and launch noise.
2. Measure each meter's update period by polling it (never assumed).
3. Size the window to last `max(min_window_s, 10 x slowest update period)`. A window ends on
   time, not on a call count fixed in advance: calls run in chunks of about a tenth of the
   window, the device is synchronised after each, and the window closes at the first chunk
   boundary past the target (a short calibration misjudges calls while clocks ramp up).
4. Measure idle power of each domain over a window of the same length with the device idle.
5. Run `trials` windows, synchronising the device at both edges of each.
6. Report per call: time, total energy, dynamic energy (total - idle power x window), average
   power per domain; medians and coefficients of variation across trials.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.meters.base import Meter, Reading

UPDATES_PER_WINDOW = 10
CHUNKS_PER_WINDOW = 10  # synchronisations per window: enough to end on time, too few to cost
TIME_METHOD = "perf_counter, device synchronised at window edges"


class MeasurementError(RuntimeError):
    """A point could not be measured as the protocol requires."""


@dataclass(frozen=True)
class Protocol:
    trials: int = 3
    min_window_s: float = 0.5
    warmup_s: float = 0.2
    period_samples: int = 5
    period_timeout_s: float = 5.0
    calibration_s: float = 0.05


@dataclass(frozen=True)
class DomainResult:
    domain: str
    method: str
    detail: str
    update_period_s: float
    idle_power_w: float
    energy_per_call_j: float
    energy_per_call_j_cv: float
    dynamic_energy_per_call_j: float
    power_w: float
    trials_energy_per_call_j: tuple[float, ...]


@dataclass(frozen=True)
class PointResult:
    calls_per_window: int
    trials_calls: tuple[int, ...]
    window_s_target: float
    window_s: float
    time_per_call_s: float
    time_per_call_s_cv: float
    trials_time_per_call_s: tuple[float, ...]
    domains: tuple[DomainResult, ...]


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample standard deviation / mean); NaN for fewer than 2 values."""
    if len(values) < 2:
        return float("nan")
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else float("nan")


def update_period_s(meter: Meter, clock: Callable[[], float], samples: int, timeout_s: float) -> float:
    """Median time between changes of the meter's value, found by polling it."""
    last = meter.poll()
    changes: list[float] = []
    deadline = clock() + timeout_s
    while len(changes) < samples + 1:
        now = clock()
        if now > deadline:
            raise MeasurementError(
                f"the {meter.domain} meter ({meter.method}) changed {len(changes)} times in "
                f"{timeout_s:g} s; cannot size windows from it"
            )
        value = meter.poll()
        if value != last:
            changes.append(now)
            last = value
    return statistics.median(b - a for a, b in zip(changes, changes[1:]))


def time_per_call_s(fn: Callable[[], object], sync: Callable[[], None], clock: Callable[[], float],
                    warmup_s: float, calibration_s: float) -> float:
    """Warm up for `warmup_s` (at least two calls), then time doubling batches of calls until one
    batch lasts `calibration_s`; returns the time of one call in that batch."""
    start = clock()
    calls = 0
    while calls < 2 or clock() - start < warmup_s:
        fn()
        sync()
        calls += 1
    batch = 1
    while True:
        sync()
        t0 = clock()
        for _ in range(batch):
            fn()
        sync()
        elapsed = clock() - t0
        if elapsed >= calibration_s:
            return elapsed / batch
        batch *= 2


def _window(meters: Sequence[Meter], body: Callable[[], None], sync: Callable[[], None],
            clock: Callable[[], float]) -> tuple[float, list[Reading]]:
    sync()
    for meter in meters:
        meter.start()
    t0 = clock()
    body()
    sync()
    elapsed = clock() - t0
    return elapsed, [meter.stop() for meter in meters]


def measure_point(
    fn: Callable[[], object],
    meters: Sequence[Meter],
    protocol: Protocol,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> PointResult:
    """Measure `fn` (a no-argument closure over preallocated inputs) with `meters`."""
    if protocol.trials < 1:
        raise ValueError("trials must be >= 1")
    call_s = time_per_call_s(fn, sync, clock, protocol.warmup_s, protocol.calibration_s)
    periods = [update_period_s(m, clock, protocol.period_samples, protocol.period_timeout_s) for m in meters]
    target_s = max([protocol.min_window_s] + [UPDATES_PER_WINDOW * p for p in periods])
    chunk = max(1, math.ceil(target_s / call_s / CHUNKS_PER_WINDOW))
    calls_done: list[int] = []

    def run_until_target() -> None:
        calls, start = 0, clock()
        while True:
            for _ in range(chunk):
                fn()
            calls += chunk
            sync()
            if clock() - start >= target_s:
                calls_done.append(calls)
                return

    _, idle = _window(meters, lambda: sleep(target_s), sync, clock)
    idle_w = [r.power_w for r in idle]

    times: list[float] = []
    windows: list[float] = []
    per_call: list[list[float]] = [[] for _ in meters]
    dynamic: list[list[float]] = [[] for _ in meters]
    power: list[list[float]] = [[] for _ in meters]
    for _ in range(protocol.trials):
        elapsed, readings = _window(meters, run_until_target, sync, clock)
        calls = calls_done[-1]
        windows.append(elapsed)
        times.append(elapsed / calls)
        for i, reading in enumerate(readings):
            per_call[i].append(reading.energy_j / calls)
            dynamic[i].append((reading.energy_j - idle_w[i] * reading.duration_s) / calls)
            power[i].append(reading.power_w)

    domains = tuple(
        DomainResult(
            domain=m.domain,
            method=m.method,
            detail=m.detail,
            update_period_s=periods[i],
            idle_power_w=idle_w[i],
            energy_per_call_j=statistics.median(per_call[i]),
            energy_per_call_j_cv=cv(per_call[i]),
            dynamic_energy_per_call_j=statistics.median(dynamic[i]),
            power_w=statistics.median(power[i]),
            trials_energy_per_call_j=tuple(per_call[i]),
        )
        for i, m in enumerate(meters)
    )
    return PointResult(
        calls_per_window=int(statistics.median(calls_done)),
        trials_calls=tuple(calls_done),
        window_s_target=target_s,
        window_s=statistics.median(windows),
        time_per_call_s=statistics.median(times),
        time_per_call_s_cv=cv(times),
        trials_time_per_call_s=tuple(times),
        domains=domains,
    )
