"""The baselines the carbon-optimal plan is held against, each a design point a practitioner
would pick, under the same SLO and verified the same way:

- performance-optimal: the lowest-latency candidate, provisioned statically for the peak hour
  (every replica on in every hour, offline work served as it arrives) on the reference host, with
  no pillar: what a latency-first deployment runs;
- energy-optimal and cost-optimal: the least energy / least cost plan with the same levers
  (pillars) as the carbon-optimal plan, from the same MILP with another objective.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.carbon.inputs import embodied
from bench.carbon.planning.milp import account
from bench.carbon.planning.pillars import Pillars
from bench.carbon.planning.setting import Economics, Plan

if TYPE_CHECKING:
    from bench.carbon.planning.run import Context


@dataclass(frozen=True)
class Baseline:
    name: str
    objective: str  # what the MILP minimises (`bench.carbon.planning.setting.OBJECTIVES`)
    says: str  # what it stands for, in the report's words


PERFORMANCE = Baseline("performance-optimal", "performance",
                       "the lowest-latency candidate, provisioned statically for the peak hour on the reference host")
MILP_BASELINES: tuple[Baseline, ...] = (
    Baseline("energy-optimal", "energy", "the least energy, with the carbon plan's levers"),
    Baseline("cost-optimal", "cost", "the least cost (GPU hours and electricity), with the carbon plan's levers"),
)
BASELINES = (PERFORMANCE,) + MILP_BASELINES
GROWTH = 0.15  # a static fleet that misses the SLO grows by this share (at least one replica) and is verified again
MAX_ROUNDS = 8


def static_plan(ctx: "Context", j: int, replicas: int, econ: Economics, pillars: Pillars) -> Plan:
    s = ctx.setting
    caps = [c for c in s.capacities if c.feasible]
    H, C = len(s.intensity_g_per_kwh), len(caps)
    online, offline = np.broadcast_to(s.online_per_hour, (H,)), np.broadcast_to(s.offline_per_hour, (H,))
    active = np.zeros((H, C))
    active[:, j] = replicas
    x, y = np.zeros((H, C)), np.zeros((H, C))
    x[:, j], y[:, j] = online, offline
    hw = caps[j].candidate.hardware
    per_node = float(embodied.gpus().loc[hw, "gpus_per_node"])
    nodes = np.array([math.ceil(replicas * caps[j].candidate.device.devices / per_node - 1e-9)], float)
    provisioned = np.zeros(C)
    provisioned[j] = replicas
    plan = Plan(PERFORMANCE.name, PERFORMANCE.objective, pillars, active, x, y, np.zeros(H), provisioned, nodes,
                node_types=[hw], kind="baseline", candidates=caps)
    account(plan, caps, s, pillars, econ)
    return plan


def performance_optimal(ctx: "Context", econ: Economics) -> Plan:
    s = ctx.setting
    caps = [c for c in s.capacities if c.feasible]
    # Lowest latency; ties: fewest GPUs per replica, then the name (deterministic).
    j = min(range(len(caps)), key=lambda k: (caps[k].latency_s_per_request, caps[k].candidate.device.devices,
                                             caps[k].candidate.name))
    peak = float(np.max(np.asarray(s.online_per_hour) + np.asarray(s.offline_per_hour)))
    replicas = max(1, math.ceil(peak / caps[j].requests_per_hour - 1e-9))
    # It picks its candidate (rightsize); the reference host, hosts retired with their GPUs, no shifting.
    pillars = Pillars.none().with_on("rightsize")
    for round_ in range(1, MAX_ROUNDS + 1):
        plan = static_plan(ctx, j, replicas, econ, pillars)
        ctx.check(plan, econ)
        if plan.feasible:
            break
        replicas += max(1, math.ceil(GROWTH * replicas))
    plan.notes.append(f"{caps[j].candidate.name}, {replicas} replica(s) always on (peak hour {peak:.0f} requests); "
                      f"verified by whole-fleet simulation in {round_} round(s)" +
                      ("" if plan.feasible else "; still missing the SLO: infeasible, not ranked"))
    return plan
