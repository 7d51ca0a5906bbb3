"""Windows aligned to counter updates.

A busy window runs the kernel in chunks and notes (time, calls done) at every chunk boundary.
Where the device can mark its queue (a CUDA event), the next chunk is queued before waiting for
the mark after the previous one, so the device never idles between chunks while the host waits
or is descheduled; otherwise the device is synchronised after each chunk. For each quantised
meter the energy is taken between the first update edge after the lead-in and the last edge
before the end, and the calls between those two edges come from the boundaries (at the device's
rate where it is kept busy, otherwise interpolated): no fraction of a counter period is lost or
gained at either end, so quantisation error vanishes and what remains is the edges' timing error
(half of a poll gap plus a read each, carried as `rel_error`). Continuous meters (a process's CPU time) are read
at the boundaries themselves; meters that only integrate (sampled power) are started and stopped
at them.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from bench.measure.meters.base import Meter, Reading
from bench.measure.monitor import WindowStats
from bench.measure.recorder import Recorder

CHUNK_S = 0.05  # device synchronised this often inside a window (each sync costs an idle gap)
# Chunks grow to at most this many times their planned length when the device runs dry (and to
# at most a third of the window).
MAX_AHEAD = 16


def kind(meter: Meter) -> str:
    """`continuous` (exact at any read), `integrating` (start/stop only) or `quantised`."""
    if getattr(meter, "continuous", False):
        return "continuous"
    if not getattr(meter, "cumulative", True):
        return "integrating"
    return "quantised"


@dataclass(frozen=True)
class DomainWindow:
    energy_j: float
    span_s: float  # between the edges used
    calls: float  # calls between them (interpolated)
    rel_error: float  # bound on the energy-per-call error from edge timing
    updates: int  # counter intervals spanned

    @property
    def energy_per_call_j(self) -> float:
        return self.energy_j / self.calls if self.calls > 0 else math.nan

    @property
    def power_w(self) -> float:
        return self.energy_j / self.span_s if self.span_s > 0 else math.nan


@dataclass
class Window:
    elapsed_s: float  # from the first boundary after the lead-in to the last
    calls: int  # in that span
    domains: list[DomainWindow | None]  # None: the meter had too few edges in the window
    stats: WindowStats | None = None
    faults: list[str] = field(default_factory=list)
    starved: int = 0  # times after the lead-in the device had finished all queued work: it idled
    busy_s_per_call: float | None = None  # the device's own time per call, where it was kept busy
    edge_error_s: float = math.nan  # a typical edge's timing error in this window (`Recorder.edge_error_s`)

    @property
    def time_per_call_s(self) -> float:
        """The device's rate where it was kept busy (late boundaries do not move it), else the
        window's time over its calls."""
        if self.busy_s_per_call is not None:
            return self.busy_s_per_call
        return self.elapsed_s / self.calls if self.calls else math.nan


@dataclass
class Step:
    """How calls are launched: `run()` issues `calls` calls (one eager call, or a CUDA graph)."""

    run: Callable[[], object]
    calls: int = 1
    label: str = "eager"


def _interp_calls(boundaries: list[tuple[float, int]], t_s: float) -> float:
    times = [b[0] for b in boundaries]
    i = bisect.bisect_right(times, t_s)
    if i == 0:
        return float(boundaries[0][1])
    if i == len(boundaries):
        return float(boundaries[-1][1])
    (t0, c0), (t1, c1) = boundaries[i - 1], boundaries[i]
    return c0 + (c1 - c0) * (t_s - t0) / (t1 - t0) if t1 > t0 else float(c1)


def _busy_rate(boundaries: list[tuple[float, int]], a_s: float, b_s: float) -> float | None:
    """Calls per second of a device kept busy (chunks queued ahead) between `a_s` and `b_s`: the
    median of the slopes between every two chunk boundaries around them (Theil-Sen). A boundary
    is when the host saw a chunk finish: late by however long it was descheduled, never early.
    Interpolating between the two boundaries beside an edge carries a late one's whole delay into
    the calls at that edge (up to 1.5% per 80 ms window on a loaded 2-core host, in the emulator's
    protocol tests); the median of all pairs is unmoved while
    fewer than about three in ten boundaries are late. It takes the rate as steady over the window:
    a clock that changes inside one (a power cap or throttling, reported beside the point) moves
    the count by the change times the share of the window it spans. None with fewer than three
    boundaries."""
    times = np.array([t for t, _ in boundaries])
    lo = max(int(np.searchsorted(times, a_s, side="right")) - 1, 0)
    hi = min(int(np.searchsorted(times, b_s, side="left")), len(times) - 1)
    if hi - lo < 2:
        return None
    t = times[lo:hi + 1]
    c = np.array([n for _, n in boundaries[lo:hi + 1]], dtype=float)
    i, j = np.triu_indices(len(t), 1)
    dt = t[j] - t[i]
    ok = dt > 0
    if not ok.any():
        return None
    return float(np.median((c[j] - c[i])[ok] / dt[ok]))


def _span(recorder: Recorder, i: int, t0_s: float, t1_s: float, boundaries: list[tuple[float, int]],
          busy: bool) -> DomainWindow | None:
    edges = recorder.edges_between(i, t0_s, t1_s)
    if len(edges) < 2:
        return None
    a, b = edges[0], edges[-1]
    span = b.time_s - a.time_s
    rate = _busy_rate(boundaries, a.time_s, b.time_s) if busy else None
    if rate is not None:
        calls = rate * span
    else:  # synchronised chunks (the device idles between them), or too few boundaries
        calls = _interp_calls(boundaries, b.time_s) - _interp_calls(boundaries, a.time_s)
    return DomainWindow(b.value - a.value, span, calls, (a.error_s + b.error_s) / span if span > 0 else math.inf,
                        len(edges) - 1)


class WindowRunner:
    def __init__(self, meters: Sequence[Meter], recorder: Recorder | None, sync: Callable[[], None],
                 clock: Callable[[], float], sleep: Callable[[float], None],
                 mark: Callable[[], object] | None = None, wait: Callable[[object], None] | None = None,
                 done: Callable[[object], bool] | None = None):
        self.meters, self.recorder, self.sync, self.clock, self.sleep = list(meters), recorder, sync, clock, sleep
        self.kinds = [kind(m) for m in self.meters]
        self.pipelined = mark is not None and wait is not None
        # Whether the work queued before a mark has all finished (a CUDA event's query()): found
        # true just before the next chunk is queued, the device has run dry and idled.
        self.done = done if self.pipelined else None
        self.ahead = 1  # chunks are this many times their planned length: doubled at each dry run
        self.mark = mark or (lambda: None)
        self.wait = wait or (lambda _mark: sync())

    def _read_continuous(self, reads: dict[int, list[tuple[float, float]]], now: float, faults: list[str]) -> None:
        for i, k in enumerate(self.kinds):
            if k == "continuous":
                try:
                    reads.setdefault(i, []).append((now, self.meters[i].poll()))
                except Exception as err:  # noqa: BLE001 - a meter error spoils this window only
                    faults.append(f"{self.meters[i].domain}: {type(err).__name__}: {err}")

    def _integrating(self, action: str, faults: list[str]) -> list[Reading | None]:
        out: list[Reading | None] = []
        for i, k in enumerate(self.kinds):
            if k != "integrating":
                out.append(None)
                continue
            try:
                out.append(self.meters[i].start() if action == "start" else self.meters[i].stop())
            except Exception as err:  # noqa: BLE001
                faults.append(f"{self.meters[i].domain}: {type(err).__name__}: {err}")
                out.append(None)
        return out

    def _spans_ready(self, t0_s: float, now: float, target_s: float) -> bool:
        for i, k in enumerate(self.kinds):
            if k == "quantised":
                assert self.recorder is not None
                edges = self.recorder.edges_between(i, t0_s, now)
                if len(edges) < 2 or edges[-1].time_s - edges[0].time_s < target_s:
                    return False
        return True

    def run(self, step: Step | None, lead_s: float, target_s: float, timeout_s: float) -> Window:
        """A busy window (`step` given) or an idle one (`step` None: the device sleeps)."""
        faults: list[str] = []
        reads: dict[int, list[tuple[float, float]]] = {}
        chunk_steps, sized = 1, False
        starved = 0
        self.sync()
        t_start = self.clock()
        boundaries = [(t_start, 0)]
        calls = 0
        lead_at: int | None = None  # index of the first boundary after the lead-in
        started = False
        starts: list[Reading | None] = [None] * len(self.meters)
        # The mark after the last chunk queued, the calls by then, and whether it was queued at its
        # sized length (a chunk queued before sizing is one step: found done, it says nothing).
        pending: tuple[object, int, bool] | None = None
        most_steps = 1 << 62  # a chunk is at most a third of the window: three boundaries in it
        while True:
            if step is None:
                self.sleep(min(CHUNK_S, max(target_s / 20, 1e-4)))
                done = 0
            else:
                if pending is not None and pending[2] and self.done is not None and self.done(pending[0]):
                    # Descheduled longer than the chunk queued ahead (or launches slower than
                    # the calls): queue more ahead from now on, in this window and the next.
                    starved += lead_at is not None
                    if self.ahead < MAX_AHEAD:  # launches slower than the calls stay dry: flagged
                        self.ahead *= 2
                        chunk_steps = min(2 * chunk_steps, most_steps)
                t_chunk = self.clock()
                for _ in range(chunk_steps):
                    step.run()
                calls += chunk_steps * step.calls
                queued = (self.mark(), calls, sized)
                if self.pipelined and pending is None:
                    pending = queued  # first chunk: queue the next one before waiting on it
                    continue
                mark, done, _ = pending if self.pipelined else queued
                self.wait(mark)
                pending = queued if self.pipelined else None
            now = self.clock()
            if step is not None and chunk_steps == 1 and now > t_chunk:  # (one step: sized again next time)
                most_steps = max(1, round(target_s / 3 / (now - t_chunk)))
                chunk_steps = min(max(1, round(self.ahead * min(CHUNK_S, target_s / 10) / (now - t_chunk))), most_steps)
                sized = True
            boundaries.append((now, done))
            if lead_at is None and now - t_start >= lead_s:
                lead_at = len(boundaries) - 1
                self._read_continuous(reads, now, faults)
                starts = self._integrating("start", faults)
                started = True
            if lead_at is not None and now - boundaries[lead_at][0] >= target_s and \
                    self._spans_ready(boundaries[lead_at][0], now, target_s):
                break
            if now - t_start > timeout_s or faults or \
                    (self.recorder is not None and self.recorder.faults_between(t_start, now)):
                break  # out of time, or a fault already spoilt the window: redo it at once
        calls = boundaries[-1][1]
        self._read_continuous(reads, now, faults)
        stops = self._integrating("stop", faults) if started else []
        if pending is not None:  # the chunk still queued runs past the window's end: let it finish
            self.wait(pending[0])
        if lead_at is None:  # ended by a fault inside the lead-in: nothing to take
            lead_at = len(boundaries) - 1
        t_lead, calls_lead = boundaries[lead_at]
        busy = self.done is not None and step is not None and not starved  # (done: only where pipelined)
        rate = _busy_rate(boundaries, t_lead, now) if busy else None
        domains: list[DomainWindow | None] = []
        for i, k in enumerate(self.kinds):
            if k == "quantised":
                assert self.recorder is not None
                domains.append(_span(self.recorder, i, t_lead, now, boundaries, busy))
            elif k == "continuous" and len(reads.get(i, [])) >= 2:
                (ta, ea), (tb, eb) = reads[i][0], reads[i][-1]
                domains.append(DomainWindow(eb - ea, tb - ta, float(calls - calls_lead), 0.0, 1))
            elif k == "integrating" and stops and stops[i] is not None and starts[i] is not None:
                domains.append(DomainWindow(stops[i].energy_j, stops[i].duration_s, float(calls - calls_lead), 0.0, 1))
            else:
                domains.append(None)
        updates = {m.domain: d.updates if d else 0 for m, d in zip(self.meters, domains)}
        stats, edge_error_s = WindowStats(updates, 0), math.nan
        if self.recorder is not None:
            faults += [f"{f.domain}: {f.message}" for f in self.recorder.faults_between(t_start, now)]
            stats = self.recorder.stats(t_lead, now, updates)
            edge_error_s = self.recorder.edge_error_s(t_lead, now)
        return Window(now - t_lead, calls - calls_lead, domains, stats, faults, starved,
                      1 / rate if rate else None, edge_error_s)

    def wait_for_edge(self, meter_index: int, timeout_s: float) -> None:
        """Sleep until the recorder sees the next update of meter `meter_index`."""
        if self.recorder is None:
            return
        seen = len(self.recorder.edges[meter_index])
        deadline = self.clock() + timeout_s
        while len(self.recorder.edges[meter_index]) == seen and self.clock() < deadline:
            self.sleep(0.0005)
