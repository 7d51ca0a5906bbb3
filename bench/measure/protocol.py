"""The measurement protocol for one point.

1. Warm up (JIT compilation and autotuning happen here, outside every window) and estimate the
   time of one call from batches of calls long enough to hide timer and launch noise.
2. Measure each meter's update period by polling it until it changes (never assumed); the
   intervals are kept, their median sizes the windows.
3. Size the window to last `max(min_window_s, 10 x slowest update period)`. A window ends on
   time, not on a call count fixed in advance: calls run in chunks of about a tenth of the
   window, the device is synchronised after each, and the window closes at the first chunk
   boundary past the target (a short calibration misjudges calls while clocks ramp up).
4. Thermal state: optionally cool down (idle until the GPU is below a temperature, or a fixed
   time) before the idle window, or pre-heat (run the kernel until power is steady) after it.
5. Measure idle power of each domain over a window of the same length with the device idle.
6. Run the trials, the first one discarded (it absorbs the transition from idle), each started
   at a different phase of the meter's update period (offsets spread over one period, after
   Yang et al., SC24), so quantisation of the counter does not line up with every window.
   A monitor thread counts each meter's updates in every window: a window that saw fewer than
   `min_updates` is rejected and repeated twice as long (up to `max_retries` times). A meter
   that changed at every look outpaced the monitor: its window length over its update period
   counts instead.
7. Report per call: time, total energy, dynamic energy (total - idle power x window), average
   power per domain; medians and coefficients of variation across trials; the clocks,
   temperatures and throttle reasons seen; the power-integration cross-check; and a quality
   flag: `ok`, or any of `noisy` (CV above threshold), `throttled`, `too-few-updates`.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.measure.meters.base import Meter, Reading
from bench.measure.monitor import WindowMonitor, WindowStats, throttle_names

UPDATES_PER_WINDOW = 10
CHUNKS_PER_WINDOW = 10  # synchronisations per window: enough to end on time, too few to cost
TIME_METHOD = "perf_counter, device synchronised at window edges"


class MeasurementError(RuntimeError):
    """A point could not be measured as the protocol requires."""


THERMAL_MODES = ("none", "preheat", "cooldown")
CALIBRATION_S = 0.05  # one batch of calls this long estimates a call's time before windows are sized


@dataclass
class Protocol:
    """The protocol's settings: the one place their defaults live (the CLI's `measure.*` schema
    is this class; `bench.measure_callable` takes the same names)."""

    trials: int = 3
    min_window_s: float = 0.5
    warmup_s: float = 0.2
    period_samples: int = 5
    period_timeout_s: float = 5.0
    discard_first: bool = True  # the first trial absorbs the step from idle and is dropped
    phase_shift: bool = True  # trial start offsets spread over one meter update period
    min_updates: int = UPDATES_PER_WINDOW  # a window whose meter updated fewer times is redone longer
    max_retries: int = 2
    cv_threshold: float = 0.02  # above it (time or energy CV across trials) a point is flagged noisy
    thermal: str = "none"  # none | preheat (run until power is steady) | cooldown (idle until cool)
    preheat_max_s: float = 30.0
    steady_tolerance: float = 0.02  # preheat ends when window power changes less than this
    cooldown_s: float = 10.0  # longest cooldown (the whole of it without a temperature sensor)
    cooldown_temp_c: float = 45.0
    monitor: bool = True  # a thread counting meter updates and sampling GPU clocks, temperature, power
    monitor_interval_s: float = 0.01


def protocol_problem(p: Protocol) -> tuple[str, object, str] | None:
    """`(setting, value, what it must be)` for the first invalid setting, else None: the one set of
    checks the CLI (`measure.<setting>`) and `bench.measure_callable` both run."""
    def number(x: object) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    integers = (("trials", 1), ("period_samples", 2), ("min_updates", 1), ("max_retries", 0))
    for name, low in integers:
        value = getattr(p, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            return name, value, f"must be an integer >= {low}"
    for name in ("min_window_s", "period_timeout_s", "monitor_interval_s"):
        value = getattr(p, name)
        if not number(value) or not value > 0:
            return name, value, "must be > 0 seconds (finite)"
    for name in ("warmup_s", "preheat_max_s", "cooldown_s"):
        value = getattr(p, name)
        if not number(value) or value < 0:
            return name, value, "must be a number of seconds >= 0 (finite)"
    if not number(p.cv_threshold) or not p.cv_threshold > 0:
        return "cv_threshold", p.cv_threshold, "must be > 0 (e.g. 0.02 for 2%)"
    if p.thermal not in THERMAL_MODES:
        return "thermal", p.thermal, f"choose one of {', '.join(THERMAL_MODES)}"
    if not number(p.steady_tolerance) or not 0 < p.steady_tolerance < 1:
        return "steady_tolerance", p.steady_tolerance, "must be in (0, 1)"
    return None


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
    update_intervals_s: tuple[float, ...] = ()
    updates_per_window_min: int | None = None  # fewest updates a kept window saw (None: not monitored)
    crosscheck_energy_per_call_j: float = math.nan
    crosscheck_rel_diff: float = math.nan  # (cross-check - counter) / counter


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
    quality: str = "ok"
    trials_discarded: int = 0
    windows_rejected: int = 0
    windows: tuple[WindowStats, ...] = ()
    preheat_s: float = 0.0
    cooldown_s: float = 0.0

    @property
    def throttled(self) -> bool:
        return any(w.throttled for w in self.windows)

    @property
    def telemetry(self) -> dict[str, object]:
        """GPU clocks, temperatures and throttle reasons over the kept windows (NaN without a GPU)."""
        gpu = [w for w in self.windows if w.samples]
        reasons = 0
        for w in gpu:
            reasons |= w.reasons
        med = (lambda xs: statistics.median(xs)) if gpu else (lambda xs: math.nan)
        return {
            "sm_mhz_mean": med([w.sm_mhz_mean for w in gpu]),
            "mem_mhz_mean": med([w.mem_mhz_mean for w in gpu]),
            "temp_c_start": gpu[0].temp_c_start if gpu else math.nan,
            "temp_c_end": gpu[-1].temp_c_end if gpu else math.nan,
            "temp_c_max": max((max(w.temp_c_start, w.temp_c_end) for w in gpu), default=math.nan),
            "throttle_reasons": "+".join(throttle_names(reasons)),
            "throttled": self.throttled,
        }


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation (sample standard deviation / mean); NaN for fewer than 2 values."""
    if len(values) < 2:
        return float("nan")
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else float("nan")


def update_period_s(meter: Meter, clock: Callable[[], float], samples: int, timeout_s: float) -> float:
    """Median time between changes of the meter's value, found by polling it."""
    return statistics.median(update_intervals_s(meter, clock, samples, timeout_s))


def update_intervals_s(meter: Meter, clock: Callable[[], float], samples: int, timeout_s: float) -> list[float]:
    """`samples` intervals between successive changes of the meter's value, found by polling."""
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
    return [b - a for a, b in zip(changes, changes[1:])]


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
            clock: Callable[[], float], monitor: WindowMonitor | None = None
            ) -> tuple[float, list[Reading], WindowStats | None]:
    sync()
    if monitor is not None:
        monitor.start()
    for meter in meters:
        meter.start()
    t0 = clock()
    body()
    sync()
    elapsed = clock() - t0
    readings = [meter.stop() for meter in meters]
    return elapsed, readings, monitor.stop() if monitor is not None else None


def _total_power_w(readings: Sequence[Reading]) -> float:
    return sum(r.power_w for r in readings)


def measure_point(
    fn: Callable[[], object],
    meters: Sequence[Meter],
    protocol: Protocol,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    monitor: WindowMonitor | None = None,
    temperature_c: Callable[[], float] | None = None,
    calibration_s: float = CALIBRATION_S,
) -> PointResult:
    """Measure `fn` (a no-argument closure over preallocated inputs) with `meters`.

    `monitor` (optional) watches every window: update counts, and GPU telemetry if it has a
    GPU; `temperature_c` (optional) is what a cooldown waits on.
    """
    if protocol.trials < 1:
        raise ValueError("trials must be >= 1")
    if protocol.thermal not in THERMAL_MODES:
        raise ValueError(f"thermal must be one of {THERMAL_MODES}, got {protocol.thermal!r}")
    call_s = time_per_call_s(fn, sync, clock, protocol.warmup_s, calibration_s)
    intervals = [update_intervals_s(m, clock, protocol.period_samples, protocol.period_timeout_s) for m in meters]
    periods = [statistics.median(i) for i in intervals]
    slowest_s = max(periods, default=0.0)
    base_target_s = max([protocol.min_window_s] + [UPDATES_PER_WINDOW * p for p in periods])
    calls_done: list[int] = []

    def run_until(target_s: float) -> Callable[[], None]:
        chunk = max(1, math.ceil(target_s / call_s / CHUNKS_PER_WINDOW))

        def body() -> None:
            calls, start = 0, clock()
            while True:
                for _ in range(chunk):
                    fn()
                calls += chunk
                sync()
                if clock() - start >= target_s:
                    calls_done.append(calls)
                    return

        return body

    cooldown_s = _cool_down(protocol, clock, sleep, temperature_c) if protocol.thermal == "cooldown" else 0.0
    _, idle, _ = _window(meters, lambda: sleep(base_target_s), sync, clock)
    idle_w = [r.power_w for r in idle]
    preheat_s = 0.0
    if protocol.thermal == "preheat":
        preheat_s = _pre_heat(protocol, meters, run_until(base_target_s), sync, clock)

    n_windows = protocol.trials + (1 if protocol.discard_first else 0)
    kept: list[tuple[float, int, list[Reading], WindowStats | None]] = []
    rejected = 0
    too_few = False
    for i in range(n_windows):
        if protocol.phase_shift and slowest_s > 0:
            sleep(slowest_s * i / n_windows)  # start offsets spread over one update period
        target_s = base_target_s
        for attempt in range(protocol.max_retries + 1):
            elapsed, readings, stats = _window(meters, run_until(target_s), sync, clock, monitor)
            seen = [stats.updates_at_least(m.domain, elapsed, periods[d]) for d, m in enumerate(meters)] if stats else []
            short = min(seen, default=protocol.min_updates) < protocol.min_updates
            if not short:
                break
            if attempt < protocol.max_retries:
                rejected += 1
                target_s *= 2
            else:
                too_few = True  # kept, and flagged: nothing measured is silently dropped
        if i == 0 and protocol.discard_first:
            continue
        kept.append((elapsed, calls_done[-1], readings, stats))

    times = [elapsed / calls for elapsed, calls, _, _ in kept]
    windows = [elapsed for elapsed, _, _, _ in kept]
    domains = []
    for d, meter in enumerate(meters):
        per_call = [r[d].energy_j / calls for _, calls, r, _ in kept]
        dynamic = [(r[d].energy_j - idle_w[d] * r[d].duration_s) / calls for _, calls, r, _ in kept]
        power = [r[d].power_w for _, _, r, _ in kept]
        stats = [s for _, _, _, s in kept if s is not None]
        cross = [s.power_w * r[d].duration_s / calls for _, calls, r, s in kept
                 if s is not None and meter.domain == "gpu" and not math.isnan(s.power_w)]
        energy = statistics.median(per_call)
        cross_e = statistics.median(cross) if cross else math.nan
        domains.append(DomainResult(
            domain=meter.domain, method=meter.method, detail=meter.detail, update_period_s=periods[d],
            idle_power_w=idle_w[d], energy_per_call_j=energy, energy_per_call_j_cv=cv(per_call),
            dynamic_energy_per_call_j=statistics.median(dynamic), power_w=statistics.median(power),
            trials_energy_per_call_j=tuple(per_call), update_intervals_s=tuple(intervals[d]),
            updates_per_window_min=min(s.updates_at_least(meter.domain, e, periods[d]) for e, _, _, s in kept
                                       if s is not None) if stats else None,
            crosscheck_energy_per_call_j=cross_e,
            crosscheck_rel_diff=(cross_e - energy) / energy if cross and energy else math.nan,
        ))
    result = PointResult(
        calls_per_window=int(statistics.median(c for _, c, _, _ in kept)),
        trials_calls=tuple(c for _, c, _, _ in kept),
        window_s_target=base_target_s,
        window_s=statistics.median(windows),
        time_per_call_s=statistics.median(times),
        time_per_call_s_cv=cv(times),
        trials_time_per_call_s=tuple(times),
        domains=tuple(domains),
        trials_discarded=n_windows - len(kept),
        windows_rejected=rejected,
        windows=tuple(s for _, _, _, s in kept if s is not None),
        preheat_s=preheat_s,
        cooldown_s=cooldown_s,
    )
    return dataclasses.replace(result, quality=quality_flag(result, protocol.cv_threshold, too_few))



def quality_flag(result: PointResult, cv_threshold: float, too_few_updates: bool) -> str:
    """`ok`, or the problems joined by `+`: `noisy`, `throttled`, `too-few-updates`."""
    totals = [sum(v) for v in zip(*(d.trials_energy_per_call_j for d in result.domains))]
    spreads = [result.time_per_call_s_cv, cv(totals) if totals else math.nan]
    flags = []
    if any(x > cv_threshold for x in spreads if not math.isnan(x)):
        flags.append("noisy")
    if result.throttled:
        flags.append("throttled")
    if too_few_updates:
        flags.append("too-few-updates")
    return "+".join(flags) or "ok"


def _cool_down(protocol: Protocol, clock: Callable[[], float], sleep: Callable[[float], None],
               temperature_c: Callable[[], float] | None) -> float:
    """Idle until the GPU is at or below `cooldown_temp_c` (at most `cooldown_s`); without a
    temperature sensor, idle `cooldown_s`."""
    start = clock()
    if temperature_c is None:
        sleep(protocol.cooldown_s)
        return clock() - start
    while temperature_c() > protocol.cooldown_temp_c and clock() - start < protocol.cooldown_s:
        sleep(0.25)
    return clock() - start


def _pre_heat(protocol: Protocol, meters: Sequence[Meter], body: Callable[[], None], sync: Callable[[], None],
              clock: Callable[[], float]) -> float:
    """Run the kernel in windows until the total power of two windows in a row differs by less
    than `steady_tolerance` (at most `preheat_max_s`); returns the time spent."""
    start = clock()
    _, readings, _ = _window(meters, body, sync, clock)
    last = _total_power_w(readings)
    while clock() - start < protocol.preheat_max_s:
        _, readings, _ = _window(meters, body, sync, clock)
        now = _total_power_w(readings)
        if last > 0 and abs(now - last) / last < protocol.steady_tolerance:
            break
        last = now
    return clock() - start
