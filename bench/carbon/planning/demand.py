"""The trace hour by hour: which requests each hour of the planning period sees.

Hour k of the trace holds the requests arriving in [k h, (k + 1) h) after its first request. A
trace at least as long as the period is used hour by hour (its first `hours` hours); only a
shorter one is replayed, hour h of the period being trace hour h mod its length (the report says
so). A trace shorter than one hour is tiled to fill it (its requests repeated, shifted by its span
plus one mean gap), so that an hour carries the trace's rate, not its few minutes of requests. Offline requests served on GPUs in an hour are drawn from the trace's offline requests in
turn and submitted evenly over the hour (a batch queue paces its work; their own arrival times
say when they became due, not when they run).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.carbon.inputs.workload import Workload

S_PER_H = 3600.0


@dataclass(frozen=True)
class Demand:
    workload: Workload
    hours: int  # of the planning period
    trace_hours: int  # hours the trace spans (a started hour counts)

    tiled: int = 1  # copies of a sub-hour trace in one hour

    @classmethod
    def of(cls, w: Workload, hours: int) -> "Demand":
        n = len(w.arrival_s)
        tiles = 1
        if n >= 2 and 0 < w.duration_s < S_PER_H:  # all at one instant: one burst per hour, not tiled
            period_s = w.duration_s * n / (n - 1)
            tiles = int(math.ceil(S_PER_H / period_s))
            start = w.arrival_s[0]
            arrival = np.concatenate([w.arrival_s - start + k * period_s for k in range(tiles)])
            keep = arrival < S_PER_H
            tile = lambda a: np.tile(a, tiles)[keep]  # noqa: E731
            w = Workload(arrival[keep], tile(w.prompt), tile(w.output), tile(w.offline), w.label)
        # Whole hours, a partial last hour shorter than half an hour merged into the one before it
        # (a few seconds past an hour must not make a second, nearly empty hour that replay repeats).
        span = max(1, int(math.floor(w.duration_s / S_PER_H + 0.5))) if len(w.arrival_s) else 1
        return cls(w, hours, span, tiles)

    @property
    def replayed(self) -> bool:
        return self.trace_hours < self.hours

    def trace_hour(self, h: int) -> int:
        return h % self.trace_hours

    def hour_of(self) -> np.ndarray:
        """Trace hour of each request (those past the last whole hour belong to it)."""
        start = self.workload.arrival_s[0] if len(self.workload.arrival_s) else 0.0
        return np.minimum(np.floor((self.workload.arrival_s - start) / S_PER_H), self.trace_hours - 1).astype(int)

    def _in_hour(self, k: int) -> np.ndarray:
        return self.hour_of() == k

    def counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(online, offline) requests arriving in each hour of the period."""
        w = self.workload
        per_hour = [(int((self._in_hour(k) & ~w.offline).sum()), int((self._in_hour(k) & w.offline).sum()))
                    for k in range(min(self.trace_hours, self.hours))]
        online = np.array([per_hour[self.trace_hour(h)][0] for h in range(self.hours)], float)
        offline = np.array([per_hour[self.trace_hour(h)][1] for h in range(self.hours)], float)
        return online, offline

    def busiest_hour(self) -> Workload:
        """The trace hour with the most requests, times from its start (capacity is sized on it)."""
        k = max(range(min(self.trace_hours, self.hours)), key=lambda i: int(self._in_hour(i).sum()))
        return self.online_hour(k, with_offline=True)

    def online_hour(self, k: int, with_offline: bool = False) -> Workload:
        w = self.workload
        mask = self._in_hour(k) & (True if with_offline else ~w.offline)
        part = w.subset(mask)
        start = (w.arrival_s[0] if len(w.arrival_s) else 0.0) + k * S_PER_H
        return Workload(part.arrival_s - start, part.prompt, part.output, part.offline, w.label)

    def offline_offsets_s(self, k: int) -> np.ndarray:
        """Arrival times of trace hour k's offline requests, seconds into the hour, sorted."""
        w = self.workload
        start = (w.arrival_s[0] if len(w.arrival_s) else 0.0) + k * S_PER_H
        return np.sort(w.arrival_s[self._in_hour(k) & w.offline] - start)

    def offline_batch(self, count: int, first: int) -> Workload:
        """`count` offline requests, the trace's offline requests taken in turn from index `first`,
        submitted evenly over one hour (all marked offline)."""
        w = self.workload
        pool = np.flatnonzero(w.offline) if w.offline.any() else np.arange(len(w.arrival_s))
        idx = pool[(first + np.arange(count)) % len(pool)] if count and len(pool) else np.zeros(0, int)
        arrival = (np.arange(count) + 0.5) * (S_PER_H / count) if count else np.zeros(0)
        return Workload(arrival, w.prompt[idx], w.output[idx], np.ones(count, bool), w.label)
