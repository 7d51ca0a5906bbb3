"""Feasibility first: online requests that cannot meet the SLO even alone on an empty replica.

Alone, a request's TTFT is one prefill step of its prompt, and its time per output token one
decode step at batch 1 (at its mean context for `mean_tpot`, at its last for `itl`: the slowest
step it sees). No plan can serve such a request within the SLO on that candidate; if, for every
candidate, more of them arrive than the attainment target allows (in the worst hour for
`plan.slo_scope=hour`, over the period for `period`), no plan exists and the planner says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.carbon.planning.demand import Demand
from bench.carbon.serving.capacity import Candidate
from bench.carbon.serving.models import ModelSpec
from bench.carbon.serving.simulate import Slo
from bench.carbon.serving.step import StepCost


def alone_ok(c: Candidate, model: ModelSpec, prompt: np.ndarray, output: np.ndarray, slo: Slo) -> np.ndarray:
    cost = StepCost.of(model, c.device)
    p = prompt.astype(float)
    at_context = p + (output.astype(float) if getattr(slo, "tpot_metric", "mean_tpot") == "itl" else output / 2.0)
    pairs, context = np.asarray(model.attended_pairs(p), float), np.asarray(model.attended_context(at_context), float)
    zeros, ones = np.zeros_like(p), np.ones_like(p)
    if cost.composed is None:  # the roofline step takes arrays: every distinct request at once
        ttft = cost.time_energy(p, pairs, zeros, zeros, ones)[0]
        tpot = cost.time_energy(zeros, zeros, ones, context, zeros)[0]
    else:  # a step from measured parts takes one step at a time
        ttft = np.array([cost.time_energy(n, q, 0.0, 0.0, 1.0)[0] for n, q in zip(p, pairs)])
        tpot = np.array([cost.time_energy(0.0, 0.0, 1.0, x, 0.0)[0] for x in context])
    return (ttft <= slo.ttft_s) & ((output <= 1) | (tpot <= slo.tpot_s))


@dataclass(frozen=True)
class Infeasible:
    count: int  # online requests no candidate can serve within the SLO even alone
    allowed: int
    online: int
    scope: str
    closest: str  # the candidate that serves the most of them alone
    closest_share: float


def check(candidates: list[Candidate], model: ModelSpec, demand: Demand, slo: Slo, scope: str) -> Infeasible | None:
    w = demand.workload
    online = ~w.offline
    if not online.any() or not candidates:
        return None
    # Distinct (prompt, output) pairs only: a trace repeats lengths a lot.
    pairs, inverse = np.unique(np.stack([w.prompt[online], w.output[online]]), axis=1, return_inverse=True)
    ok = {c.name: alone_ok(c, model, pairs[0], pairs[1], slo)[inverse.ravel()] for c in candidates}
    anyone = np.logical_or.reduce(list(ok.values()))
    closest = max(ok, key=lambda name: int(ok[name].sum()))
    hours_of = demand.hour_of()[online]
    planned = hours_of < min(demand.trace_hours, demand.hours)  # trace hours past the period are never planned
    groups = [np.flatnonzero(planned)] if scope == "period" else \
        [np.flatnonzero(hours_of == k) for k in np.unique(hours_of[planned])]
    worst = None
    for g in groups:
        if not len(g):
            continue
        bad = int((~anyone[g]).sum())
        allowed = int(math.floor((1.0 - slo.attainment) * len(g) + 1e-9))
        if bad > allowed and (worst is None or bad - allowed > worst.count - worst.allowed):
            worst = Infeasible(bad, allowed, len(g), scope, closest, float(ok[closest][g].mean()))
    return worst
