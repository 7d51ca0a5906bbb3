"""Whole-fleet verification: every hour of a plan, its requests routed across all of the plan's
active replicas and every replica simulated.

Routing (`plan.routing`):
- `round_robin`: each request goes to the candidate whose share of the hour's planned load (the
  MILP's online and offline requests per candidate) is furthest behind (smooth weighted round
  robin), then to that candidate's replicas in turn;
- `least_loaded`: each request goes to the replica with the least outstanding work, counted in
  requests and drained at the replica's capacity (requests per hour within the SLO): a
  join-the-shortest-queue dispatcher that sees queue lengths, not the simulated state.
The hour's pooled attainment is over all its online requests; the worst replica is reported too.

Offline deadlines: offline work is served oldest first (earliest deadline first, the order in
which the plan's backlog meets every deadline), an hour's GPU share before its host-CPU share.
Each offline request the simulation ran is held to its own deadline: its place in that order
gives its arrival hour, the trace its arrival time in it, plus `deadline_h`; one that finishes
after it, or not within the 2 h horizon, is late (work spilling past an hour is not carried into
the next hour's simulation, so unfinished work counts as late). A plan with any late request
fails that hour, as an SLO miss does.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from bench.carbon.inputs.workload import Workload
from bench.carbon.planning.demand import S_PER_H, Demand
from bench.carbon.planning.options import ROUTINGS
from bench.carbon.serving.capacity import Capacity
from bench.carbon.serving.models import ModelSpec
from bench.carbon.serving.simulate import Slo, simulate
from bench.carbon.serving.step import StepCost


@dataclass
class HourResult:
    met: int  # online requests within the SLO
    online: int
    worst_replica: float  # attainment of the worst replica that served online requests
    missed: set[str]  # candidates with a replica below the target
    ttft_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # online requests' TTFT (NaN: unfinished)
    tpot_s: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their per-token latency by the SLO's metric
    # Every request of the hour (online and offline): its share of each step's energy by tokens
    # processed (simulated, GPU only), prefill and decode apart, and its tokens (prompt + output).
    prefill_j: np.ndarray = field(default_factory=lambda: np.zeros(0))
    decode_j: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gpu_energy_j: float = math.nan  # the active replicas over the hour: simulated steps, idle power between them
    # The hour's offline requests in submission order (oldest first): finish time, seconds into the
    # hour (inf: unfinished at the 2 h horizon), and the candidate whose replica served each.
    offline_finish_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    offline_by: np.ndarray = field(default_factory=lambda: np.zeros(0, object))
    partial: bool = False  # a quick check's replica stopped early: only which hours fail and who missed hold

    @property
    def attainment(self) -> float:
        return self.met / self.online if self.online else 1.0


@dataclass
class Verification:
    hours: list[HourResult]
    attainment: float  # pooled over the period
    worst_hour: float
    worst_replica: float
    latency: dict[str, float]  # worst hour's TTFT / per-token p50 and tail (the SLO's percentile)
    deadline_misses: np.ndarray = field(default_factory=lambda: np.zeros(0))  # offline requests per hour
    late_by: list[set[str]] = field(default_factory=list)  # per hour, candidates that served a late one

    @property
    def partial(self) -> bool:
        """Some hour was cut short by a quick check (it fails): the figures are not the plan's."""
        return any(r.partial for r in self.hours)

    def failing_hours(self, slo: Slo, scope: str) -> list[int]:
        """Hours that miss the SLO (in scope) or an offline deadline."""
        late = {h for h, n in enumerate(self.deadline_misses) if n > 0}
        if scope == "period":
            slow = {h for h, r in enumerate(self.hours) if r.attainment < slo.attainment} \
                if self.attainment < slo.attainment else set()
        else:
            slow = {h for h, r in enumerate(self.hours) if r.attainment < slo.attainment}
        return sorted(slow | late)

    def missed_in(self, h: int) -> set[str]:
        """Candidates to blame for hour h: replicas below the SLO, and those that spilled work late."""
        r = self.hours[h]
        late = self.late_by[h] if h < len(self.late_by) else set()
        return r.missed | late


def route(requests: Workload, replicas: list[tuple[int, float, float]], policy: str) -> np.ndarray:
    """Replica index per request. `replicas`: (candidate index, planned share, capacity per hour)."""
    n = len(requests.arrival_s)
    out = np.zeros(n, int)
    if not replicas or n == 0:
        return out
    if policy == "round_robin":  # the order depends on the shares and the count only: one per hour state
        return _round_robin(tuple(float(r[1]) for r in replicas), n).astype(int)  # a copy of the cached order
    if policy == "least_loaded":
        rate_per_s = np.array([max(r[2], 1e-9) / S_PER_H for r in replicas])
        backlog = np.zeros(len(replicas))
        last = 0.0
        for i, t in enumerate(requests.arrival_s):
            backlog = np.maximum(backlog - rate_per_s * (t - last), 0.0)
            last = t
            k = int(np.argmin((backlog + 1.0) / rate_per_s))  # the soonest expected finish, this request included
            backlog[k] += 1.0
            out[i] = k
        return out
    raise ValueError(f"plan.routing={policy!r}: choose one of {', '.join(ROUTINGS)}")


@functools.lru_cache(maxsize=256)
def _round_robin(shares: tuple[float, ...], n: int) -> np.ndarray:
    """Smooth weighted round robin of n requests over replicas with these planned shares (each
    carries its candidate's share): each request to the replica with the most credit, the first
    such, whose credit then drops by one. Plain floats: per request, numpy's call overhead on a few
    replicas cost more than the arithmetic (the same operations, so the same order)."""
    if len(shares) == 1:
        return _frozen(np.zeros(n, np.int32))
    total = float(np.sum(np.array(shares, float)))
    share = [x / total for x in shares] if total > 0 else [1.0 / len(shares)] * len(shares)
    credit = [0.0] * len(shares)
    out = np.empty(n, np.int32)  # cached: the smallest type, read-only
    replicas = range(len(shares))
    for i in range(n):
        for k in replicas:
            credit[k] += share[k]
        best = 0
        for k in replicas:
            if credit[k] > credit[best]:
                best = k
        credit[best] -= 1.0
        out[i] = best
    return _frozen(out)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _hour_requests(demand: Demand, h: int, offline_count: int) -> Workload:
    # The same offline requests for the same count, so hours in the same state share one simulation.
    online = demand.online_hour(demand.trace_hour(h))
    batch = demand.offline_batch(offline_count, 0)
    both = Workload(np.concatenate([online.arrival_s, batch.arrival_s]), np.concatenate([online.prompt, batch.prompt]),
                    np.concatenate([online.output, batch.output]), np.concatenate([online.offline, batch.offline]),
                    online.label)
    order = np.argsort(both.arrival_s, kind="stable")
    return both.subset(order)


def allowed_misses(online: int, target: float) -> int:
    """The most online requests an hour may miss and still meet `target` (judged as
    `HourResult.attainment`: met / online >= target)."""
    a = max(0, int(math.floor(online * (1.0 - target))))
    while a < online and (online - (a + 1)) / online >= target:
        a += 1
    while a >= 0 and online and (online - a) / online < target:
        a -= 1
    return a


def verify_hour(demand: Demand, h: int, plan, model: ModelSpec, slo: Slo, policy: str,
                quick: bool = False) -> HourResult:
    """The hour simulated on every active replica. `quick`: a replica stops as soon as its own TTFT
    misses exceed what the whole hour may miss, since the hour then fails whatever the others do,
    and that replica is below the target too; the other replicas run in full, so which hours fail
    and which candidates missed are the full simulation's, while the hour's other figures are
    partial (`HourResult.partial`): for a round that will be re-planned, never for a reported plan."""
    caps: list[Capacity] = plan.candidates
    # Whole requests, as the cache key counts them (`_key`): a simulation depends on nothing the key
    # leaves out, so a cached hour is exactly the hour it stands for, whichever plan simulated it first.
    planned = np.round(plan.online[h]) + np.round(plan.offline_gpu[h])
    replicas = []
    for j, c in enumerate(caps):
        u = int(plan.active[h, j])
        for _ in range(u):
            replicas.append((j, planned[j] / u if u else 0.0, c.requests_per_hour))
    requests = _hour_requests(demand, h, int(round(float(plan.offline_gpu[h].sum()))))
    online = ~requests.offline
    if not replicas:
        return HourResult(0, int(online.sum()), 0.0 if online.any() else 1.0,
                          {"(no active replica)"} if online.any() else set(), np.full(int(online.sum()), np.nan),
                          np.full(int(online.sum()), np.nan), gpu_energy_j=0.0)  # nothing on: nothing drawn
    where = route(requests, replicas, policy)
    stop_after = allowed_misses(int(online.sum()), slo.attainment) if quick else None
    partial = False
    met = 0
    worst = 1.0
    missed: set[str] = set()
    ttft = np.full(len(requests.arrival_s), np.nan)
    tpot = np.full(len(requests.arrival_s), np.nan)
    prefill_j = np.zeros(len(requests.arrival_s))
    decode_j = np.zeros(len(requests.arrival_s))
    gpu_j = 0.0
    finish_all = np.full(len(requests.arrival_s), np.inf)
    by = np.full(len(requests.arrival_s), "", object)
    for k, (j, _, _) in enumerate(replicas):
        mine = where == k
        c = caps[j].candidate
        if not mine.any():
            gpu_j += c.device.idle_w * S_PER_H  # on all hour, idle
            continue
        part = requests.subset(mine)
        # An overloaded replica never clears its queue: two hours bound the simulation; what is
        # unfinished by then missed the SLO.
        res = simulate(part.arrival_s, part.prompt, part.output, StepCost.of(model, c.device), c.max_batch,
                       online=~part.offline, horizon_s=2 * S_PER_H, max_prefill_tokens=c.max_prefill_tokens,
                       slo=slo if quick else None, abort_violations=stop_after)
        partial = partial or (quick and res.aborted)  # (a stop at the horizon too: the full run would stop there alike)
        per_token = res.tpot_metric_s(slo)
        ok = _within(res.ttft_s, per_token, slo) & ~part.offline
        gpu_j += res.busy_energy_j + c.device.idle_w * max(0.0, S_PER_H - res.busy_s)  # active all hour
        ttft[mine], tpot[mine] = res.ttft_s, per_token
        prefill_j[mine], decode_j[mine] = res.prefill_energy_j, res.decode_energy_j
        finish_all[mine] = np.nan_to_num(res.finish_s, nan=math.inf)  # unfinished at the horizon: inf
        by[mine] = c.name
        n_online = int((~part.offline).sum())
        if n_online:
            met += int(ok.sum())
            share = ok.sum() / n_online
            worst = min(worst, share)
            if share < slo.attainment:
                missed.add(c.name)
    return HourResult(met, int(online.sum()), worst, missed, ttft[online], tpot[online], prefill_j, decode_j,
                      (requests.prompt + requests.output).astype(float), gpu_j,
                      finish_all[requests.offline], by[requests.offline], partial)  # offline: in submission order


def _within(ttft: np.ndarray, tpot: np.ndarray, slo: Slo) -> np.ndarray:
    return (np.nan_to_num(ttft, nan=math.inf) <= slo.ttft_s) & (np.nan_to_num(tpot, nan=0.0) <= slo.tpot_s) \
        & ~np.isnan(ttft)


def _key(plan, h: int, demand: Demand) -> tuple:
    return (demand.trace_hour(h), round(float(plan.offline_gpu[h].sum())),
            tuple((c.candidate.name, int(plan.active[h, j]), round(float(plan.online[h, j])),
                   round(float(plan.offline_gpu[h, j]))) for j, c in enumerate(plan.candidates) if plan.active[h, j]))


def late_offline(finish_s: list[np.ndarray], served: np.ndarray, arrived: np.ndarray, deadline_h: int,
                 offsets_s) -> list[np.ndarray]:
    """Per hour, which of its GPU offline requests (`finish_s[h]`, in submission order, seconds into
    the hour) miss their deadline. Work is served oldest first, the GPU's share of an hour's
    `served` first; the i-th request of hour h's GPU batch holds that place in the order, so it
    arrived in the hour a where that place falls, at `offsets_s(a)[j]` seconds into it (sorted), and
    is due `deadline_h` hours after that."""
    done = np.concatenate([[0.0], np.round(np.cumsum(served))])  # served before each hour, oldest first
    due = np.round(np.cumsum(arrived))  # arrived by the end of each hour
    before = np.concatenate([[0.0], due[:-1]])  # arrived before each hour
    offsets: dict[int, np.ndarray] = {}
    out = []
    for h, finish in enumerate(finish_s):
        n = len(finish)
        late = np.zeros(n, bool)
        if n:
            # Places done[h] + 1 .. done[h] + n are consecutive, so their arrival hours (the first
            # hour a with due[a] >= place; past the last arrival, the last hour) are a run of
            # slices: found from the run's two ends, not place by place.
            first = done[h] + 1
            a_lo, a_hi = (min(int(np.searchsorted(due, x, side="left")), len(due) - 1) for x in (first, done[h] + n))
            for a in range(a_lo, a_hi + 1):
                lo = 0 if a == a_lo else int(before[a] + 1 - first)
                hi = n if a == a_hi else int(due[a] + 1 - first)
                if hi <= lo:  # an hour without arrivals
                    continue
                if a not in offsets:
                    offsets[a] = np.asarray(offsets_s(a), float)
                jj = (first - before[a] + np.arange(lo, hi)).astype(int)  # 1-based places within hour a
                offset = np.zeros(hi - lo)
                known = (jj >= 1) & (jj <= len(offsets[a]))
                offset[known] = offsets[a][jj[known] - 1]  # else no trace time: due from its hour's start
                late[lo:hi] = h * S_PER_H + finish[lo:hi] > (a + deadline_h) * S_PER_H + offset
        out.append(late)
    return out


def verify(plan, demand: Demand, model: ModelSpec, slo: Slo, policy: str, cache: dict,
           deadline_h: int = 24, quick: bool = False, first: tuple[int, ...] = ()) -> Verification:
    """Every hour of `plan` (`verify_hour`, cached by what an hour's simulation depends on). `quick`
    (for an SLO judged per hour, in a round that re-plans what fails): a failing hour may be cut
    short (`verify_hour`), and the hours are simulated busiest first, skipping any whose active GPU
    types all have a candidate to blame already: a re-plan derates every candidate of a blamed type
    in every hour, so such an hour could blame no other type and cannot change the re-plan. Those
    hours are not simulated (`HourResult.partial`). `first`: hours a quick check simulates before
    the busiest (those that failed in earlier rounds, where a miss is likeliest again).
    A verification whose hours all pass is complete either way (`Verification.partial` is False)."""
    H = plan.active.shape[0]
    hours: list[HourResult | None] = [None] * H
    todo = []
    for h in range(H):
        key = _key(plan, h, demand)
        if key in cache:
            hours[h] = cache[key]
        elif quick and ("quick", key) in cache:
            hours[h] = cache[("quick", key)]
        else:
            todo.append((h, key))
    hardware = {c.candidate.name: c.candidate.hardware for c in plan.candidates}
    active = np.asarray(plan.active)

    def types_in(h: int) -> set[str]:
        return {c.candidate.hardware for j, c in enumerate(plan.candidates) if active[h, j]}

    def blame(r: HourResult) -> set[str]:
        return {hardware[n] for n in r.missed if n in hardware} if r.attainment < slo.attainment else set()

    blamed = set().union(*(blame(r) for r in hours if r is not None))
    if quick:  # the busiest hours first (load per active replica), where a miss is likeliest
        load = (np.asarray(plan.online).sum(axis=1) + np.asarray(plan.offline_gpu).sum(axis=1)) \
            / np.maximum(np.asarray(plan.active).sum(axis=1), 1)
        rank = {h: i for i, h in enumerate(first)}
        todo.sort(key=lambda t: (rank.get(t[0], len(rank)), -load[t[0]]))
    for h, key in todo:
        if key in cache or (quick and ("quick", key) in cache):  # an hour alike simulated in this loop
            hours[h] = cache[key] if key in cache else cache[("quick", key)]
            continue
        if quick and blamed and blamed >= types_in(h):
            hours[h] = HourResult(0, 0, 1.0, set(), partial=True)  # not simulated: it cannot change the re-plan
            continue
        r = verify_hour(demand, h, plan, model, slo, policy, quick)
        cache[("quick", key) if r.partial else key] = r
        hours[h] = r
        blamed |= blame(r)
    met, total = sum(r.met for r in hours), sum(r.online for r in hours)
    worst = min(hours, key=lambda r: r.attainment)
    latency = {}
    for name, values in (("ttft", worst.ttft_s), ("tpot", worst.tpot_s)):
        finite = values[~np.isnan(values)]
        for q, label in ((50, "p50"), (slo.percentile, "tail")):
            latency[f"{name}_{label}_s"] = float(np.percentile(finite, q)) if len(finite) else math.nan
    _, arrived = demand.counts()
    served = np.asarray(plan.offline_gpu, float).sum(axis=1) + np.asarray(plan.offline_cpu, float)
    by_trace_hour: dict[int, np.ndarray] = {}  # a replayed trace's hours share their arrival times

    def offsets_s(a: int) -> np.ndarray:
        k = demand.trace_hour(a)
        if k not in by_trace_hour:
            by_trace_hour[k] = demand.offline_offsets_s(k)
        return by_trace_hour[k]

    late = late_offline([r.offline_finish_s for r in hours], served, arrived, deadline_h, offsets_s)
    return Verification(hours, met / total if total else 1.0, worst.attainment,
                        min(r.worst_replica for r in hours), latency, np.array([float(m.sum()) for m in late]),
                        [set(r.offline_by[m]) for r, m in zip(hours, late)])
