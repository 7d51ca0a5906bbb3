"""A thread that polls the quantised meters (counters that change only at update edges: the NVML
energy counter, RAPL) and timestamps every change, so the protocol can take energy between two
observed edges instead of between two arbitrary reads.

An edge is known to lie between the start of the poll before it and the end of the poll that saw
it (a poll gap plus one read); the protocol uses the midpoint and carries half that span as the
edge's timing error. A second thread samples GPU
telemetry (clocks, temperature, clock-event reasons, instant power) for every window, so its
slower calls never widen the gaps between the counter's polls.

Nothing a meter raises ends the thread: an error is recorded with its time (a window that
contains one is redone), and so is a counter that went backwards.
"""
from __future__ import annotations

import bisect
import math
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.measure.meters.base import Meter
from bench.measure.meters.nvml import integrate_trapezoid
from bench.measure.monitor import GpuSample, GpuTelemetry, WindowStats

TELEMETRY_EVERY_S = 0.01  # GPU telemetry is sampled this often, in its own thread (meters every interval)


@dataclass(frozen=True)
class Edge:
    before_s: float  # start of the last poll that saw the old value
    after_s: float  # end of the first poll that saw the new one
    value: float

    @property
    def time_s(self) -> float:
        return (self.before_s + self.after_s) / 2

    @property
    def error_s(self) -> float:
        return (self.after_s - self.before_s) / 2


@dataclass(frozen=True)
class Fault:
    time_s: float
    domain: str
    message: str


class Recorder:
    def __init__(self, meters: Sequence[Meter], telemetry: GpuTelemetry | None = None, interval_s: float = 0.001,
                 clock: Callable[[], float] = time.perf_counter):
        self.meters, self.telemetry, self.interval_s, self.clock = list(meters), telemetry, interval_s, clock
        self.edges: list[list[Edge]] = [[] for _ in self.meters]
        self.faults: list[Fault] = []
        self.samples: list[GpuSample] = []
        self._last: list[tuple[float, float] | None] = [None] * len(self.meters)  # (poll start, value)
        self._polls: list[float] = []
        self._reads_s: list[float] = []  # each round's longest meter read (pre to post)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _poll_meters(self) -> None:
        longest_s = 0.0
        for i, meter in enumerate(self.meters):
            # The value seen held at some instant between these two clock reads: an edge lies
            # after the start of the last poll that saw the old value and before the end of the
            # first that saw the new one, however the thread was delayed in between.
            pre = self.clock()
            try:
                value = meter.poll()
            except Exception as err:  # noqa: BLE001 - any driver error is recorded, never fatal here
                self.faults.append(Fault(self.clock(), meter.domain, f"{type(err).__name__}: {err}"))
                self._last[i] = None  # the next value cannot be timed against an old poll
                continue
            post = self.clock()
            longest_s = max(longest_s, post - pre)
            last = self._last[i]
            if last is not None and value != last[1]:
                if value < last[1]:
                    self.faults.append(Fault(post, meter.domain, f"counter went backwards ({last[1]:.6g} -> {value:.6g})"))
                self.edges[i].append(Edge(last[0], post, value))
            self._last[i] = (pre, value)
        self._reads_s.append(longest_s)
        self._polls.append(self.clock())

    def _sample(self) -> None:
        if self.telemetry is None:
            return
        try:
            self.samples.append(self.telemetry.sample(self.clock()))
        except Exception as err:  # noqa: BLE001
            self.faults.append(Fault(self.clock(), "gpu_telemetry", f"{type(err).__name__}: {err}"))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll_meters()
            self._stop.wait(self.interval_s)

    def _run_telemetry(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(TELEMETRY_EVERY_S)

    def start(self) -> None:
        self._stop.clear()
        # Telemetry has a thread of its own: a sample is five NVML calls, and on a virtualised GPU
        # (the lent H200's Firecracker VM, 2026-12-04) they took long enough that, polled in the
        # same loop, the counter was read only every 4.5-6.6 ms instead of every 1 ms. An edge's
        # timing error is half a gap between the polls around it (plus a read), so every window had to grow
        # to 2 s before it met the precision target. ctypes releases the GIL during NVML calls.
        self._threads = [threading.Thread(target=self._run, name="edge-recorder", daemon=True)]
        if self.telemetry is not None:
            self._threads.append(threading.Thread(target=self._run_telemetry, name="gpu-telemetry", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads = []

    # -- queries (from the measuring thread) ------------------------------------------------
    def edges_between(self, i: int, t0_s: float, t1_s: float) -> list[Edge]:
        """Edges of meter i wholly inside [t0_s, t1_s] (both of their polls)."""
        return [e for e in list(self.edges[i]) if e.before_s >= t0_s and e.after_s <= t1_s]

    def faults_between(self, t0_s: float, t1_s: float) -> list[Fault]:
        return [f for f in list(self.faults) if t0_s <= f.time_s <= t1_s]

    def poll_gaps_s(self) -> list[float]:
        polls = list(self._polls)
        return [b - a for a, b in zip(polls, polls[1:])]

    def edge_error_s(self, t0_s: float = -math.inf, t1_s: float = math.inf) -> float:
        """The timing error of a typical edge among the polling rounds that ended in [t0_s, t1_s]:
        an edge lies between the start of the last poll that saw the old value and the end of the
        first that saw the new one, a poll gap plus one read apart, and is carried as half that.
        With fast reads it is half a gap; where a read takes as long as the wait between reads (the
        lent H200's VM: ~5 ms, 2026-12-04) it is a whole gap. Medians, so one round delayed by the
        scheduler does not move it; NaN with fewer than two rounds."""
        polls = list(self._polls)
        lo, hi = bisect.bisect_left(polls, t0_s), bisect.bisect_right(polls, t1_s)
        if hi - lo < 2:
            return math.nan
        gaps = [b - a for a, b in zip(polls[lo:hi], polls[lo + 1:hi])]
        return (statistics.median(gaps) + statistics.median(self._reads_s[lo:hi])) / 2

    def stats(self, t0_s: float, t1_s: float, updates: dict[str, int]) -> WindowStats:
        """Telemetry over [t0_s, t1_s] and the updates the window used."""
        polls = list(self._polls)
        n_polls = bisect.bisect_right(polls, t1_s) - bisect.bisect_left(polls, t0_s)
        s = [x for x in list(self.samples) if t0_s <= x.time_s <= t1_s]
        if not s:
            return WindowStats(updates, 0, polls=n_polls)
        reasons = 0
        for sample in s:
            reasons |= sample.reasons
        return WindowStats(
            updates, len(s),
            sm_mhz_mean=statistics.fmean(x.sm_mhz for x in s), mem_mhz_mean=statistics.fmean(x.mem_mhz for x in s),
            temp_c_start=s[0].temp_c, temp_c_end=s[-1].temp_c, reasons=reasons,
            power_energy_j=integrate_trapezoid([(x.time_s, x.power_w) for x in s]) if len(s) > 1 else math.nan,
            power_span_s=s[-1].time_s - s[0].time_s, polls=n_polls,
        )
