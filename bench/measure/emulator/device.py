"""An emulated asynchronous device running one synthetic kernel.

A launch queues calls that run back to back after whatever is queued, as on a GPU stream; the
host pays `launch_s` per launch (PyTorch's eager launches cost several microseconds each) and
blocks while `queue_depth` launches are pending, as a full CUDA launch queue does. `replay(n)` is
one launch of n calls, like replaying a CUDA graph. `sync()` waits until the queue drains. The
spans in which the device ran work are kept (`busy_spans`), for utilisation as NVML samples it.

The true energy of one call in steady state is `busy_w x call_s`: that is what a protocol should
report, whatever the counter's period, lag or sensing slice.
"""
from __future__ import annotations

import bisect
import collections
import threading
import time
from typing import Callable

from bench.measure.emulator.power import PowerModel, PowerTimeline

SPIN_BELOW_S = 5e-4  # sync sleeps until this close to the end, then spins (time.sleep overshoots)


class EmulatedDevice:
    def __init__(self, call_s: float, model: PowerModel = PowerModel(), launch_s: float = 0.0,
                 queue_depth: int = 1024, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        if not call_s > 0:
            raise ValueError(f"call_s must be > 0, got {call_s}")
        self.call_s, self.model, self.launch_s, self.queue_depth = call_s, model, launch_s, queue_depth
        self.clock, self._sleep = clock, sleep
        self.timeline = PowerTimeline(model, clock())
        self._end_s = self.clock()  # when the queued work finishes
        self._pending: collections.deque[float] = collections.deque()  # end time of each queued launch
        self._busy_starts: list[float] = []  # spans of back-to-back work, in time order
        self._busy_ends: list[float] = []
        self._lock = threading.Lock()
        self.calls = 0

    @property
    def true_energy_per_call_j(self) -> float:
        return self.model.busy_w * self.call_s

    def _settle(self, now: float) -> None:
        """Record that the device went idle when its queue drained, if that is past."""
        if self.timeline.busy and now >= self._end_s:
            self.timeline.switch(self._end_s, busy=False)
        while self._pending and self._pending[0] <= now:
            self._pending.popleft()

    def _wait_until(self, t_s: float) -> None:
        while True:
            left = t_s - self.clock()
            if left <= 0:
                return
            if left > SPIN_BELOW_S:
                self._sleep(left - SPIN_BELOW_S)

    def _spin(self, seconds: float) -> None:
        end = self.clock() + seconds
        while self.clock() < end:
            pass

    def launch(self, calls: int = 1) -> None:
        if self.launch_s:
            self._spin(self.launch_s)
        while True:
            with self._lock:
                now = self.clock()
                self._settle(now)
                if len(self._pending) < self.queue_depth:
                    start = max(now, self._end_s)
                    if not self.timeline.busy:
                        self.timeline.switch(start, busy=True)
                    self._end_s = start + calls * self.call_s
                    if self._busy_ends and start <= self._busy_ends[-1]:
                        self._busy_ends[-1] = self._end_s  # queued behind running work: one span
                    else:
                        self._busy_starts.append(start)
                        self._busy_ends.append(self._end_s)
                    self._pending.append(self._end_s)
                    self.calls += calls
                    return
                oldest = self._pending[0]
            self._wait_until(oldest)

    def call(self) -> None:
        """One eager launch of one call."""
        self.launch(1)

    def replay(self, calls: int) -> None:
        """One launch of `calls` calls (a CUDA graph of them)."""
        self.launch(calls)

    def sync(self) -> None:
        with self._lock:
            end = self._end_s
        self._wait_until(end)

    def mark(self) -> float:
        """When the work queued so far will have finished (a CUDA event recorded now)."""
        with self._lock:
            return self._end_s

    def wait(self, mark: float) -> None:
        """Until the work queued before `mark` has finished (the event's synchronize)."""
        self._wait_until(mark)

    def done(self, mark: float) -> bool:
        """Whether the work queued before `mark` has finished (the event's query)."""
        return self.clock() >= mark

    def energy_j(self, t_s: float) -> float:
        """True energy up to `t_s` (not after now)."""
        with self._lock:
            self._settle(self.clock())
            return self.timeline.energy_j(t_s)

    def power_w(self, t_s: float) -> float:
        with self._lock:
            self._settle(self.clock())
            return self.timeline.power_w(t_s)

    @property
    def start_s(self) -> float:
        return self.timeline.start_s

    def busy_spans(self, start_s: float, end_s: float) -> list[tuple[float, float]]:
        """The spans within [start_s, end_s] in which the device runs (or will run) queued work."""
        with self._lock:
            spans = []
            for i in range(bisect.bisect_right(self._busy_ends, start_s), len(self._busy_ends)):
                if self._busy_starts[i] >= end_s:
                    break
                spans.append((max(self._busy_starts[i], start_s), min(self._busy_ends[i], end_s)))
            return spans
