"""The measurement protocol for one point.

1. Warm up (JIT compilation and autotuning happen here, outside every window) and estimate the
   time of one call from batches of calls long enough to hide timer and launch noise. Where the
   caller can capture the kernel in a CUDA graph (`graph`, `measure.graph=true`) and a call is
   short, windows replay a graph of many calls, so launch overhead is not what gets measured.
2. Idle phase, device idle: a recorder thread timestamps every update edge of each quantised
   meter (NVML energy counter, RAPL); the intervals give each meter's update period (measured,
   never assumed) and the energy between the first and last edge after `lead_in_s` gives idle
   power. Continuous meters (process CPU time) are read at the phase's ends. A polled meter's fault
   ends the phase at once; it is redone, then refused in one line naming the fault.
3. Window length: the longest of `min_window_s`, `min_updates` update periods, and what keeps
   the edge-timing error bound (at each end, half of one poll gap plus one counter read, over the
   window; twice for margin) under `target_rel_error`.
4. Thermal state: optionally cool down before the idle phase or pre-heat after it.
5. Trials: each starts after an update edge of the slowest meter plus a phase offset (spread over
   one period across trials, with a random part), runs the kernel for `lead_in_s` (at least one
   period: the ramp from idle and the counter's lag fall there), then takes energy between the
   first and last update edges inside the window and the calls between them (`windows.py`), so
   counter quantisation does not enter. A window is redone (up to `max_retries`) when a meter
   raised or its counter went backwards (the point then fails if it persists), when the device
   ran dry inside it (all queued work done before the next chunk was queued: the host was
   descheduled longer than the work queued ahead, or launches are slower than the calls; chunks
   then grow, up to 16x, and `starved` is flagged if it persists), when it spanned
   fewer than `min_updates` updates (redone twice as long) or its error bound exceeds the target
   (redone as long as its own polls need: `_growth`); flagged `too-few-updates` / `imprecise` if it
   persists, or when a power is implausible:
   negative, below idle minus `plausible_tolerance`, or above the device's power limit
   (flagged `implausible` if it persists).
6. Report per call: time, energy per domain with its method, dynamic energy (total - idle power x
   time), power; medians and CVs (of |mean|) across trials; totals over measured domains apart
   from totals that include modelled ones, each with its CV from the same per-trial sums; the
   clocks, temperatures and throttle reasons seen; the instant-power cross-check; a quality flag
   (`point.QUALITY_FLAGS`; one trial is `single-trial`, never `ok`).
"""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.measure.meters.base import Meter
from bench.measure.monitor import GpuTelemetry
from bench.measure.point import (TIME_METHOD, TIME_METHOD_MIXED, TIME_METHOD_RATE, DomainResult, PointResult, cv,
                                 quality_flag)
from bench.measure.recorder import Recorder
from bench.measure.windows import Step, Window, WindowRunner, kind

__all__ = ["TIME_METHOD", "MeasurementError", "PointResult", "DomainResult", "Protocol", "cv", "measure_point",
           "protocol_problem"]

GRAPH_BELOW_S = 1e-3  # calls shorter than this are replayed from a CUDA graph where allowed
GRAPH_STEP_S = 2e-3  # one replay lasts about this long
GRAPH_MAX_CALLS = 4096


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
    period_samples: int = 5  # update intervals timed in the idle phase
    period_timeout_s: float = 5.0
    lead_in_s: float = 0.1  # kernel runs this long (at least one update period) before a window's first edge
    target_rel_error: float = 0.005  # bound on edge-timing error per window; sizes windows
    discard_first: bool = True  # the first trial absorbs what a lead-in cannot (allocator, page faults after idle)
    phase_shift: bool = True  # trials start at offsets spread over one update period after an edge
    min_updates: int = 2  # update intervals a window spans at least (sizing and rejection)
    max_retries: int = 2
    cv_threshold: float = 0.02  # above it (time or energy CV across trials) a point is flagged noisy
    # Points on device=cpu: the kernel shares the host's cores, caches and memory bus with the OS,
    # this harness and the VM's neighbours, so its time (and the CPU-time model's energy with it)
    # varies between windows however they are cut: on the 2-core CI-like VM the CV across trials
    # reached 8% with the VM idle and far more beside other work (README, protocol).
    cpu_cv_threshold: float = 0.10
    plausible_tolerance: float = 0.1  # window power below idle x (1 - this) or above limit x (1 + this)
    graph: bool = True  # replay short calls from a CUDA graph where the case allows it
    thermal: str = "none"  # none | preheat (run until power is steady) | cooldown (idle until cool)
    preheat_max_s: float = 30.0
    steady_tolerance: float = 0.02  # preheat ends when window power changes less than this
    cooldown_s: float = 10.0  # longest cooldown (the whole of it without a temperature sensor)
    cooldown_temp_c: float = 45.0
    monitor: bool = True  # sample GPU clocks, temperature, throttle reasons, instant power per window
    monitor_interval_s: float = 0.001  # how often the recorder polls the meters


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
    for name in ("min_window_s", "period_timeout_s", "monitor_interval_s", "lead_in_s"):
        value = getattr(p, name)
        if not number(value) or not value > 0:
            return name, value, "must be > 0 seconds (finite)"
    for name in ("warmup_s", "preheat_max_s", "cooldown_s"):
        value = getattr(p, name)
        if not number(value) or value < 0:
            return name, value, "must be a number of seconds >= 0 (finite)"
    for name in ("target_rel_error", "plausible_tolerance"):
        value = getattr(p, name)
        if not number(value) or not 0 < value < 1:
            return name, value, "must be in (0, 1)"
    for name in ("cv_threshold", "cpu_cv_threshold"):
        value = getattr(p, name)
        if not number(value) or not value > 0:
            return name, value, "must be > 0 (e.g. 0.02 for 2%)"
    if p.thermal not in THERMAL_MODES:
        return "thermal", p.thermal, f"choose one of {', '.join(THERMAL_MODES)}"
    if not number(p.steady_tolerance) or not 0 < p.steady_tolerance < 1:
        return "steady_tolerance", p.steady_tolerance, "must be in (0, 1)"
    return None



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


def choose_step(fn: Callable[[], object], call_s: float, protocol: Protocol,
                graph: Callable[[int], Callable[[], object]] | None) -> Step:
    """Eager calls, or a CUDA graph of calls when a call is short and the case allows it (the
    label says why a graph was not used when capture failed)."""
    if not protocol.graph or graph is None or call_s >= GRAPH_BELOW_S:
        return Step(fn)
    n = max(2, min(GRAPH_MAX_CALLS, round(GRAPH_STEP_S / call_s)))
    try:
        replay = graph(n)
    except Exception as err:  # noqa: BLE001 - a case that cannot be captured is measured eagerly
        return Step(fn, 1, f"eager (CUDA graph capture failed: {type(err).__name__})")
    return Step(replay, n, f"cuda_graph({n} calls)")


@dataclass
class Idle:
    power_w: list[float]
    intervals_s: list[list[float]]
    precise: bool = True  # its edges' timing error within the target (else taken at the deadline)

    @property
    def periods_s(self) -> list[float]:
        return [statistics.median(i) if i else 0.0 for i in self.intervals_s]


def idle_phase(meters: Sequence[Meter], runner: WindowRunner, protocol: Protocol) -> Idle:
    """Device idle: time each quantised meter's updates and take idle power between edges."""
    recorder, clock, sleep = runner.recorder, runner.clock, runner.sleep
    kinds = runner.kinds
    for attempt in range(protocol.max_retries + 1):
        runner.sync()
        t0 = clock()
        settled = t0 + protocol.lead_in_s  # the ramp down from the warm-up is left out
        sleep(protocol.lead_in_s)
        reads, faults = {}, []
        runner._read_continuous(reads, clock(), faults)
        starts = runner._integrating("start", faults)
        deadline = clock() + protocol.period_timeout_s
        need = protocol.period_samples + 1
        while True:
            now = clock()
            if recorder is not None and recorder.faults_between(t0, now):
                break  # a failing meter is named as failing, not as one that never changed
            edges = [recorder.edges_between(i, settled, now) if recorder and k == "quantised" else None
                     for i, k in enumerate(kinds)]
            counts = [need if e is None else len(e) for e in edges]
            enough = min(counts, default=need) >= need and now - settled >= protocol.lead_in_s
            # Idle power is energy between two edges over their span: it runs on until the edges'
            # timing error (half a poll gap plus a read each, longer on a loaded host) is within the target
            # too, as a window does, or until the deadline.
            precise = all(e is None or (len(e) >= 2 and e[0].error_s + e[-1].error_s
                                        <= protocol.target_rel_error * (e[-1].time_s - e[0].time_s)) for e in edges)
            if enough and (precise or now > deadline):
                break
            if now > deadline:
                worst = counts.index(min(counts))
                m = meters[worst]
                raise MeasurementError(f"the {m.domain} meter ({m.method}) changed {counts[worst]} times in "
                                       f"{protocol.period_timeout_s:g} s; cannot size windows from it")
            sleep(0.005)
        runner._read_continuous(reads, clock(), faults)
        stops = runner._integrating("stop", faults)
        if recorder is not None:
            faults += [f"{f.domain}: {f.message}" for f in recorder.faults_between(t0, now)]
        if faults:
            if attempt < protocol.max_retries:
                continue
            raise MeasurementError(f"meter faults while measuring idle power: {'; '.join(faults[:3])}")
        power, intervals = [], []
        for i, k in enumerate(kinds):
            if k == "quantised":
                edges = recorder.edges_between(i, settled, now)
                times = [e.time_s for e in edges]
                intervals.append([b - a for a, b in zip(times, times[1:])])
                power.append((edges[-1].value - edges[0].value) / (times[-1] - times[0]))
            elif k == "continuous":
                (ta, ea), (tb, eb) = reads[i][0], reads[i][-1]
                intervals.append([])
                power.append((eb - ea) / (tb - ta) if tb > ta else math.nan)
            else:
                reading = stops[i]
                intervals.append([])
                power.append(reading.power_w if reading is not None and starts is not None else math.nan)
        return Idle(power, intervals, precise)
    raise AssertionError("unreachable")


def _problem(window: Window, protocol: Protocol, meters: Sequence[Meter], idle_w: list[float],
             max_power_w: list[float | None], target_s: float) -> str | None:
    """Why a window must be redone: `fault`, `starved`, `too-few-updates`, `imprecise`, `implausible`."""
    if window.faults:
        return "fault"
    if window.starved:  # idle gaps inside the window: its energy per call is not the kernel's
        return "starved"
    for d, m, idle, limit in zip(window.domains, meters, idle_w, max_power_w):
        if d is None or (kind(m) == "quantised" and d.updates < protocol.min_updates) or d.calls <= 0:
            return "too-few-updates"
        if d.rel_error > protocol.target_rel_error:
            return "imprecise"
        tol = protocol.plausible_tolerance
        if d.energy_j < 0 or (not math.isnan(idle) and d.power_w < idle * (1 - tol)) or \
                (limit is not None and d.power_w > limit * (1 + tol)):
            return "implausible"
    return None


def measure_point(
    fn: Callable[[], object],
    meters: Sequence[Meter],
    protocol: Protocol,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    telemetry: GpuTelemetry | None = None,
    temperature_c: Callable[[], float] | None = None,
    calibration_s: float = CALIBRATION_S,
    graph: Callable[[int], Callable[[], object]] | None = None,
    mark: Callable[[], object] | None = None,
    wait: Callable[[object], None] | None = None,
    done: Callable[[object], bool] | None = None,
    seed: int = 0,
    cv_threshold: float | None = None,
) -> PointResult:
    """Measure `fn` (a no-argument closure over preallocated inputs) with `meters`.

    `telemetry` (optional) is sampled in every window; `temperature_c` (optional) is what a
    cooldown waits on; `graph(n)` (optional) returns a callable that replays n calls of `fn`;
    `mark()` / `wait(mark)` (optional, e.g. CUDA events) let windows queue the next chunk of calls
    before waiting for the previous one, and `done(mark)` (optional, the event's query) tells
    whether the device ran dry before the next chunk was queued. `cv_threshold` replaces `protocol.cv_threshold` (the
    session passes `cpu_cv_threshold` for points on the host CPU).
    """
    problem = protocol_problem(protocol)
    if problem is not None:
        raise ValueError(f"measure.{problem[0]}={problem[1]!r}: {problem[2]}")
    t_begin = clock()
    call_s = time_per_call_s(fn, sync, clock, protocol.warmup_s, calibration_s)
    step = choose_step(fn, call_s, protocol, graph)
    needs_recorder = any(kind(m) == "quantised" for m in meters) or (telemetry is not None and protocol.monitor)
    recorder = Recorder([m if kind(m) == "quantised" else _Silent(m) for m in meters],
                        telemetry if protocol.monitor else None, protocol.monitor_interval_s, clock) \
        if needs_recorder else None
    runner = WindowRunner(meters, recorder, sync, clock, sleep, mark, wait, done)
    if recorder is not None:
        recorder.start()
    try:
        if cv_threshold is not None:
            protocol = dataclasses.replace(protocol, cv_threshold=cv_threshold)
        return _measure(step, meters, protocol, runner, call_s, temperature_c, t_begin, seed)
    finally:
        if recorder is not None:
            recorder.close()


class _Silent(Meter):
    """Stands in the recorder for a meter it must not poll (continuous or integrating)."""

    def __init__(self, meter: Meter):
        self.domain, self.method = meter.domain, meter.method

    def is_available(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self):  # pragma: no cover - never called
        raise NotImplementedError

    def poll(self) -> float:
        return 0.0


def _measure(step: Step, meters: Sequence[Meter], protocol: Protocol,
             runner: WindowRunner, call_s: float, temperature_c: Callable[[], float] | None, t_begin: float,
             seed: int) -> PointResult:
    clock, sleep = runner.clock, runner.sleep
    cooldown_s = cool_down(protocol, clock, sleep, temperature_c) if protocol.thermal == "cooldown" else 0.0
    idle = idle_phase(meters, runner, protocol)
    periods = idle.periods_s
    slowest_s = max(periods, default=0.0)
    slowest = periods.index(slowest_s) if periods else 0
    # A window's error bound is its two edges' timing errors over its span, so the window is sized
    # at twice that sum (a margin) over the target. An edge's error is what the idle phase's polls
    # imply (half of a gap plus a read: `Recorder.edge_error_s`), at least half the gap asked for: on
    # the lent H200's VM a counter read took ~5 ms (2026-12-04), so windows sized from the 1 ms
    # asked for were all redone; sized from the gap alone, ignoring the read, the margin was gone
    # and a loaded host redid one window in three (CI, 2026-12-07).
    seen_s = runner.recorder.edge_error_s() if runner.recorder is not None else math.nan
    edge_error_s = max(protocol.monitor_interval_s / 2, seen_s if math.isfinite(seen_s) else 0.0)
    base_target_s = max([protocol.min_window_s, protocol.min_updates * slowest_s]
                        + [_precise_s(edge_error_s, protocol) for m in meters if kind(m) == "quantised"])
    lead_s = max(protocol.lead_in_s, slowest_s)
    max_power_w = [getattr(m, "max_power_w", None) for m in meters]
    preheat_s = 0.0
    if protocol.thermal == "preheat":
        preheat_s = _pre_heat(protocol, runner, step, lead_s, base_target_s)

    planned_s = base_target_s  # reported as window_s_target: what the settings ask (window_s: what ran)
    rng = random.Random(seed)
    n_windows = protocol.trials + (1 if protocol.discard_first else 0)
    kept: list[Window] = []
    rejections: list[str] = []
    # An idle power taken at its deadline, its edges' error bound still over the target, is kept
    # (the windows need it) and flagged: it sets every dynamic energy of the point.
    persisting: set[str] = set() if idle.precise else {"imprecise"}
    for i in range(n_windows):
        target_s = base_target_s
        for attempt in range(protocol.max_retries + 1):
            if protocol.phase_shift and slowest_s > 0:
                runner.wait_for_edge(slowest, 3 * slowest_s + 0.1)
                sleep(slowest_s * (i + rng.random()) / n_windows)  # offsets spread over one period
            timeout_s = lead_s + 4 * target_s + 3 * slowest_s + 1.0
            window = runner.run(step, lead_s, target_s, timeout_s)
            problem = _problem(window, protocol, meters, idle.power_w, max_power_w, target_s)
            if problem is None:
                break
            if attempt < protocol.max_retries:
                rejections.append(problem + (f" ({window.faults[0]})" if window.faults else ""))
                target_s *= _growth(problem, window, protocol, target_s)
                continue
            if problem == "fault":
                raise MeasurementError(f"meter fault in {protocol.max_retries + 1} tries of a window, last: "
                                       f"{window.faults[0]}")
            persisting.add(problem)  # kept, and flagged: nothing measured is silently dropped
        # The next window starts at the length this one needed: the poll gaps that made it
        # imprecise are the machine's, not the window's (on the lent H200 every window of a point
        # was redone twice before this).
        base_target_s = max(base_target_s, target_s)
        if i == 0 and protocol.discard_first:
            continue
        kept.append(window)
    return _result(kept, meters, idle, planned_s, protocol, persisting, rejections, n_windows, preheat_s,
                   cooldown_s, step, lead_s, clock() - t_begin)


def _precise_s(edge_error_s: float, protocol: Protocol) -> float:
    """The span that keeps a window's bound (two edges' errors over its span) at half the target."""
    return 2 * 2 * edge_error_s / protocol.target_rel_error


def _growth(problem: str, window: Window, protocol: Protocol, target_s: float) -> float:
    """How much longer the retry of a rejected window runs. An edge's timing error does not shrink
    with the window, so an imprecise one grows to the span its typical edge error (the poll gaps
    and reads inside it: a host loaded by the work polls slower than the idle phase saw) needs
    with the sizing's margin, at least 25% (a miss from one edge late by a descheduled poll);
    without polls to go by, by the ratio its bound missed by, with 10% margin. (Grown by that
    ratio alone, a retry missed again whenever its own edges fell a little later: one point in
    three on a loaded 2-core host.) A window with too few counter updates doubles; a starved one
    keeps its length (its chunks grew instead: the runner queues more ahead)."""
    if problem == "imprecise":
        if math.isfinite(window.edge_error_s) and window.edge_error_s > 0:
            return max(1.25, _precise_s(window.edge_error_s, protocol) / target_s)
        worst = max((d.rel_error for d in window.domains if d is not None), default=math.nan)
        if math.isfinite(worst) and worst > 0:
            return max(1.25, 1.1 * worst / protocol.target_rel_error)
        return 2.0
    return 2.0 if problem == "too-few-updates" else 1.0


def _limit_w(meter: Meter) -> float:
    """A GPU meter's enforced power limit (NVML's); other meters' `max_power_w` is a plausibility bound, not a limit."""
    limit = getattr(meter, "max_power_w", None) if meter.domain == "gpu" else None
    return float(limit) if isinstance(limit, (int, float)) else math.nan


def _result(kept: list[Window], meters: Sequence[Meter], idle: Idle, target_s: float, protocol: Protocol,
            persisting: set[str], rejections: list[str], n_windows: int, preheat_s: float, cooldown_s: float,
            step: Step, lead_s: float, measure_s: float) -> PointResult:
    times = [w.time_per_call_s for w in kept]
    domains = []
    for d, meter in enumerate(meters):
        usable = [w for w in kept if w.domains[d] is not None and w.domains[d].calls > 0]
        per_call = [w.domains[d].energy_per_call_j for w in usable]
        dynamic = [(w.domains[d].energy_j - idle.power_w[d] * w.domains[d].span_s) / w.domains[d].calls
                   for w in usable]
        cross = [w.stats.power_w * w.time_per_call_s for w in usable
                 if w.stats is not None and meter.domain == "gpu" and not math.isnan(w.stats.power_w)]
        med = statistics.median(per_call) if per_call else math.nan
        cross_e = statistics.median(cross) if cross else math.nan
        domains.append(DomainResult(
            domain=meter.domain, method=meter.method, detail=meter.detail, update_period_s=idle.periods_s[d],
            idle_power_w=idle.power_w[d], energy_per_call_j=med, energy_per_call_j_cv=cv(per_call),
            dynamic_energy_per_call_j=statistics.median(dynamic) if dynamic else math.nan,
            power_w=statistics.median(w.domains[d].power_w for w in usable) if usable else math.nan,
            trials_energy_per_call_j=tuple(per_call), trials_dynamic_energy_per_call_j=tuple(dynamic),
            update_intervals_s=tuple(idle.intervals_s[d]),
            updates_per_window_min=min((w.domains[d].updates for w in usable), default=None),
            rel_error_max=max((w.domains[d].rel_error for w in usable), default=math.nan),
            crosscheck_energy_per_call_j=cross_e,
            crosscheck_rel_diff=(cross_e - med) / med if cross and med else math.nan,
            power_limit_w=_limit_w(meter),
        ))
    result = PointResult(
        calls_per_window=int(statistics.median(w.calls for w in kept)),
        trials_calls=tuple(w.calls for w in kept),
        window_s_target=target_s,
        window_s=statistics.median(w.elapsed_s for w in kept),
        time_per_call_s=statistics.median(times),
        time_per_call_s_cv=cv(times),
        trials_time_per_call_s=tuple(times),
        domains=tuple(domains),
        trials_discarded=n_windows - len(kept),
        windows_rejected=len(rejections),
        rejections=tuple(rejections),
        windows=tuple(w.stats for w in kept if w.stats is not None),
        preheat_s=preheat_s,
        cooldown_s=cooldown_s,
        launch=step.label,
        lead_in_s=lead_s,
        measure_s=measure_s,
        time_method=_time_method([w.busy_s_per_call is not None for w in kept]),
    )
    return dataclasses.replace(result, quality=quality_flag(result, protocol.cv_threshold, persisting, protocol.trials))


def _time_method(rated: list[bool]) -> str:
    """The point's time method from which of its kept windows took the device's rate."""
    return TIME_METHOD_RATE if all(rated) else TIME_METHOD if not any(rated) else TIME_METHOD_MIXED


def cool_down(protocol: Protocol, clock: Callable[[], float], sleep: Callable[[float], None],
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


def _pre_heat(protocol: Protocol, runner: WindowRunner, step: Step, lead_s: float, target_s: float) -> float:
    """Run the kernel in windows until the total power of two windows in a row differs by less
    than `steady_tolerance` (at most `preheat_max_s`); returns the time spent."""
    clock = runner.clock
    start = clock()

    def power() -> float:
        w = runner.run(step, lead_s, target_s, lead_s + 4 * target_s + 1.0)
        return sum(d.power_w for d in w.domains if d is not None)

    last = power()
    while clock() - start < protocol.preheat_max_s:
        now = power()
        if last > 0 and abs(now - last) / last < protocol.steady_tolerance:
            break
        last = now
    return clock() - start
