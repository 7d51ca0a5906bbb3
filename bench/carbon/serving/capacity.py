"""What one replica of a candidate configuration can serve within the SLO, found by simulation.

Requests are spread round-robin over identical replicas, so one replica with every N-th request
stands for all N; a replica that can take more than the whole trace sees it compressed in time.
The highest such load that still meets the SLO gives the replica's capacity in requests per
hour. The planner's energy model of an active replica-hour is affine in the requests it serves,
`active_w` x 1 h + `dynamic_j_per_request` x requests, drawn through two simulated points: the
capacity point and about half its load (each hour's energy: steps plus idle power between them).
A partly loaded replica batches less, so its energy per request is higher than at capacity: a
line through the capacity point and idle power alone would undercount it (the whole-fleet
verification showed about 2x), and the planner would favour large, underused replicas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.carbon.serving.device import DeviceModel
from bench.carbon.serving.models import ModelSpec
from bench.carbon.serving.step import StepCost
from bench.carbon.serving.simulate import SimResult, Slo, simulate
from bench.carbon.inputs.workload import Workload

MAX_REPLICAS_LOG2 = 10  # the most replicas a trace's load is spread over: 1024
MAX_LOAD_LOG2 = 6  # and the most it is multiplied by (64x)


@dataclass(frozen=True)
class Candidate:
    """A serving configuration: device model (one replica), its hardware, and the batch cap."""

    name: str
    hardware: str  # gpu type in the catalogue, or "host_cpu"
    device: DeviceModel
    max_batch: int
    max_prefill_tokens: int = 0  # prompt tokens prefilled per step (0: no cap)


@dataclass(frozen=True)
class Capacity:
    candidate: Candidate
    requests_per_hour: float  # per replica, within the SLO (0: cannot meet it)
    dynamic_j_per_request: float
    active_w: float  # power of an active replica beyond its requests (the line at no load; >= idle power)
    attainment: float  # at the operating point (or the best seen, if it cannot meet the SLO)
    replicas_for_trace: int
    ttft_p50_s: float
    tpot_p50_s: float
    latency_s_per_request: float  # mean completion time at the operating point

    @property
    def feasible(self) -> bool:
        return self.requests_per_hour > 0


def at_load(w: Workload, load: float) -> Workload:
    """The requests one replica sees when the trace's rate is multiplied by `load` and spread
    over replicas: every (1/load)-th request for load <= 1, the trace compressed in time by
    `load` for load > 1 (the same requests arriving `load` times faster)."""
    if load <= 1:
        return w.subset(np.arange(len(w.arrival_s)) % max(1, round(1 / load)) == 0)
    return Workload(w.arrival_s / load, w.prompt, w.output, w.offline, w.label)


def run_load(w: Workload, cost: StepCost, max_batch: int, load: float, slo: Slo | None, abort: bool,
             max_prefill_tokens: int = 0) -> tuple[SimResult, Workload]:
    part = at_load(w, load)
    online = ~part.offline
    limit = int(math.floor((1 - slo.attainment) * online.sum())) if (slo and abort) else None
    # A replica must clear its requests well within twice their span, or it is overloaded; and at least
    # have the time to serve its longest request alone after the last arrives (a sparse slice, a request
    # or two, spans seconds: its longest request alone took longer, and the replica counted as overloaded
    # at every load, so a trace of ten requests an hour was refused as if no GPU could serve it).
    horizon_s = 2 * max(part.duration_s, 1.0) + solo_s(part, cost)
    res = simulate(part.arrival_s, part.prompt, part.output, cost, max_batch, online=online, slo=slo,
                   abort_violations=limit, horizon_s=horizon_s, max_prefill_tokens=max_prefill_tokens)
    return res, part


def solo_s(w: Workload, cost: StepCost) -> float:
    """About the most time one replica takes to serve any one of `w`'s requests alone: the largest
    prompt in one prefill (every causal pair attended), then the largest output, each token one decode
    step at the largest prompt plus the largest output (step times grow with both, so no request alone
    takes longer, but for a prefill split into chunks, each chunk a step's overhead more)."""
    if not len(w.arrival_s):
        return 0.0
    p, o = float(np.max(w.prompt)), float(np.max(w.output))
    prefill = float(np.asarray(cost.time_energy(p, p * (p + 1) / 2, 0.0, 0.0, 1.0)[0]).ravel()[0])
    decode = float(np.asarray(cost.time_energy(0.0, 0.0, 1.0, p + o, 0.0)[0]).ravel()[0])
    return prefill + o * decode


def _loads() -> list[float]:
    """Loads tried: powers of 2^(1/4) (capacity is resolved to within 19%), below 1 as whole strides."""
    low = sorted({1.0 / round(2 ** (i / 4)) for i in range(1, 4 * MAX_REPLICAS_LOG2 + 1)} - {1.0})
    return low + [2 ** (i / 4) for i in range(0, 4 * MAX_LOAD_LOG2 + 1)]


WINDOW_MIN_ONLINE = 100  # online requests a capacity window must hold for its percentiles to mean much


def capacity(c: Candidate, model: ModelSpec, w: Workload, slo: Slo, window_s: float | None = 900.0) -> Capacity:
    """Capacity from the first `window_s` of the trace (a quarter hour by default: enough
    requests for the percentiles, a quarter of the simulation time), or the whole trace where that
    window holds fewer than `WINDOW_MIN_ONLINE` online requests (a sparse hour: every one counts)."""
    if window_s is not None and w.duration_s > window_s:
        head = w.subset(w.arrival_s < window_s)
        if int((~head.offline).sum()) >= WINDOW_MIN_ONLINE:
            w = head
    cost = StepCost.of(model, c.device)
    if model.weight_bytes > c.device.memory_bytes:
        return Capacity(c, 0.0, math.nan, c.device.idle_w, 0.0, 0, math.nan, math.nan, math.nan)
    loads = _loads()
    results: dict[int, tuple[SimResult, Workload]] = {}

    def ok(i: int) -> bool:
        if i not in results:
            results[i] = run_load(w, cost, c.max_batch, loads[i], slo, abort=True, max_prefill_tokens=c.max_prefill_tokens)
        return results[i][0].attainment(slo) >= slo.attainment

    # Binary search for the highest load that meets the SLO (attainment falls as load rises).
    lo, hi = -1, len(loads)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    if lo < 0:
        best = max(r.attainment(slo) for r, _ in results.values())
        return Capacity(c, 0.0, math.nan, c.device.idle_w, best, 0, math.nan, math.nan, math.nan)
    res, part = results[lo]
    hours = max(part.duration_s, 1.0) / 3600.0
    served = len(part.arrival_s)
    rate, energy = served / hours, hourly_j(res, part, c.device.idle_w)
    # The load nearest half the capacity load (below 1 the loads are whole strides, not 2^(1/4) steps).
    half = min(range(lo), key=lambda i: abs(math.log(loads[i] / (loads[lo] / 2)))) if lo > 0 else -1
    active_w, dynamic = c.device.idle_w, (res.busy_energy_j - c.device.idle_w * res.busy_s) / served
    if half >= 0:
        if half not in results:
            results[half] = run_load(w, cost, c.max_batch, loads[half], None, abort=False,
                                     max_prefill_tokens=c.max_prefill_tokens)
        res_h, part_h = results[half]
        rate_h = len(part_h.arrival_s) / (max(part_h.duration_s, 1.0) / 3600.0)
        if rate_h < rate:
            slope = (energy - hourly_j(res_h, part_h, c.device.idle_w)) / (rate - rate_h)
            # Never below idle power at no load, never a negative energy per request.
            active_w = max(c.device.idle_w, (energy - max(slope, 0.0) * rate) / 3600.0)
            dynamic = max(0.0, (energy - active_w * 3600.0) / rate)
    completion = float(np.nanmean(res.finish_s - part.arrival_s))
    replicas = max(1, math.ceil(1 / loads[lo]))
    return Capacity(c, rate, dynamic, active_w, res.attainment(slo), replicas,
                    res.percentile("ttft_s", 50), res.percentile("tpot_s", 50), completion)


def hourly_j(res: SimResult, part: Workload, idle_w: float) -> float:
    """A replica's energy per hour at this load: its steps, and idle power between them."""
    span_s = max(part.duration_s, 1.0)
    return (res.busy_energy_j + idle_w * max(0.0, span_s - res.busy_s)) / (span_s / 3600.0)
