"""Capacity planning over the hours of a period as a MILP (`scipy.optimize.milp`, HiGHS).

Each hour replays the request trace: its online requests must be served that hour by active
replicas within their SLO capacity; its offline requests may wait up to `deadline_h` hours
(carbon-aware time shifting) and may run on the hosts' CPUs (Reuse). Replicas provisioned for
the period carry embodied carbon for every hour; active replicas draw their idle power plus a
dynamic energy per request (from simulation, `capacity.py`); parked replicas are off.

Decision variables, per hour h and candidate c: active replicas u (integer), online requests
x and offline requests y served; per hour offline requests z served by host CPUs; per candidate
provisioned replicas n and nodes m (integers). Objectives: carbon (operational at the hour's
intensity x PUE, plus amortised embodied), energy, cost, or latency; the pillars restrict what
the solver may choose.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, sparse

from bench.carbon.inputs import embodied
from bench.carbon.planning.pillars import Pillars, host_for, lifetimes_for
from bench.carbon.planning.setting import J_PER_KWH, OBJECTIVES, Economics, Plan, PlanError, Setting
from bench.carbon.serving.capacity import Capacity


def solve(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str) -> Plan:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: choose one of {OBJECTIVES}")
    levers = pillars.levers()
    caps = [c for c in s.capacities if c.feasible and (levers.any_candidate or c.candidate.name == s.reference)]
    if not caps:
        raise PlanError("no candidate meets the SLO" + ("" if levers.any_candidate else f" (only {s.reference} allowed)"))
    H, C = len(s.intensity_g_per_kwh), len(caps)
    reuse = levers.offline_on_host_cpus and econ.host_cpu_capacity is not None and econ.host_cpu_capacity.feasible
    # Variable layout: u, x, y (H*C each), z (H), n (C), m (C).
    iu, ix, iy = 0, H * C, 2 * H * C
    iz, i_n, im = 3 * H * C, 3 * H * C + H, 3 * H * C + H + C
    nvar = im + C

    def at(base: int, h: int, c: int) -> int:
        return base + h * C + c

    gpus_tab = embodied.gpus()
    tp = np.array([c.candidate.device.devices for c in caps], float)
    per_node = np.array([float(gpus_tab.loc[c.candidate.hardware, "gpus_per_node"]) for c in caps])
    kg_gpu_h = np.zeros(C)
    kg_host_h = np.zeros(C)
    for j, c in enumerate(caps):
        life = lifetimes_for(s, c.candidate.hardware, levers)
        g, hst = embodied.node_kg_per_hour(c.candidate.hardware, 1, host_for(s, c.candidate.hardware, levers), life,
                                           s.embodied_level)
        kg_gpu_h[j], kg_host_h[j] = g, hst
    kg_per_j = s.intensity_g_per_kwh * s.pue / J_PER_KWH / 1000.0  # [H]
    e_req = np.array([c.dynamic_j_per_request for c in caps])
    p_act = np.array([c.active_w for c in caps])
    price = np.array([float(gpus_tab.loc[c.candidate.hardware, "price_usd_per_gpu_hour"]) for c in caps])
    e_cpu = econ.host_cpu_capacity.dynamic_j_per_request if reuse else 0.0

    cost = np.zeros(nvar)
    for h in range(H):
        for j in range(C):
            energy_u, energy_req = p_act[j] * 3600.0, e_req[j]
            if objective == "carbon":
                cost[at(iu, h, j)] = kg_per_j[h] * energy_u
                cost[at(ix, h, j)] = cost[at(iy, h, j)] = kg_per_j[h] * energy_req
            elif objective == "energy":
                cost[at(iu, h, j)] = energy_u / J_PER_KWH
                cost[at(ix, h, j)] = cost[at(iy, h, j)] = energy_req / J_PER_KWH
            elif objective == "cost":
                cost[at(iu, h, j)] = energy_u / J_PER_KWH * econ.electricity_usd_per_kwh
                cost[at(ix, h, j)] = cost[at(iy, h, j)] = energy_req / J_PER_KWH * econ.electricity_usd_per_kwh
            else:  # performance: request latency, with a tiny energy term to break ties
                lat = caps[j].latency_s_per_request
                cost[at(ix, h, j)] = cost[at(iy, h, j)] = lat + 1e-9 * energy_req
                cost[at(iu, h, j)] = 1e-9 * energy_u
        if reuse:
            cost[iz + h] = {"carbon": kg_per_j[h] * e_cpu, "energy": e_cpu / J_PER_KWH,
                            "cost": e_cpu / J_PER_KWH * econ.electricity_usd_per_kwh,
                            "performance": econ.host_cpu_capacity.latency_s_per_request}[objective]
    for j in range(C):
        if objective == "carbon":
            cost[i_n + j], cost[im + j] = H * tp[j] * kg_gpu_h[j], H * kg_host_h[j]
        elif objective == "cost":
            cost[i_n + j] = H * tp[j] * price[j]
        else:
            cost[i_n + j] = cost[im + j] = 1e-6  # provision no more than needed

    rows, lo, hi = [], [], []

    def add(coefs: dict[int, float], low: float, high: float) -> None:
        rows.append(coefs)
        lo.append(low)
        hi.append(high)

    for h in range(H):
        add({at(ix, h, j): 1.0 for j in range(C)}, s.online_per_hour, s.online_per_hour)
        for j in range(C):
            add({at(ix, h, j): 1.0, at(iy, h, j): 1.0, at(iu, h, j): -caps[j].requests_per_hour}, -np.inf, 0.0)
            add({at(iu, h, j): 1.0, i_n + j: -1.0}, -np.inf, 0.0)
        if reuse:
            add({iz + h: 1.0, **{im + j: -econ.host_cpu_capacity.requests_per_hour for j in range(C)}}, -np.inf, 0.0)
    arrived = np.cumsum(np.full(H, s.offline_per_hour))
    deadline = s.deadline_h if levers.offline_within_deadline else 1
    due = np.array([arrived[h - deadline + 1] if h - deadline + 1 >= 0 else 0.0 for h in range(H)])
    due[-1] = arrived[-1]
    for h in range(H):
        served = {}
        for k in range(h + 1):
            for j in range(C):
                served[at(iy, k, j)] = 1.0
            if reuse:
                served[iz + k] = 1.0
        add(served, due[h], arrived[h])
    for j in range(C):
        add({im + j: per_node[j], i_n + j: -tp[j]}, 0.0, np.inf)

    a = sparse.lil_matrix((len(rows), nvar))
    for r, coefs in enumerate(rows):
        for col, v in coefs.items():
            a[r, col] = v
    integrality = np.zeros(nvar)
    integrality[iu:iu + H * C] = 1
    integrality[i_n:] = 1
    upper = np.full(nvar, np.inf)
    if not reuse:
        upper[iz:iz + H] = 0.0
    res = optimize.milp(cost, constraints=optimize.LinearConstraint(a.tocsr(), lo, hi), integrality=integrality,
                        bounds=optimize.Bounds(np.zeros(nvar), upper), options={"time_limit": 20})
    if res.x is None:
        raise PlanError(f"plan {name}: the MILP found no feasible plan ({res.message})")
    v = res.x
    u = np.round(v[iu:iu + H * C].reshape(H, C))
    plan = Plan(name, objective, pillars, u, v[ix:ix + H * C].reshape(H, C), v[iy:iy + H * C].reshape(H, C),
                v[iz:iz + H], np.round(v[i_n:i_n + C]), np.round(v[im:im + C]))
    if not levers.any_candidate:
        plan.notes.append(f"rightsize off: only the reference {s.reference}")
    _account(plan, caps, s, pillars, econ, kg_gpu_h, kg_host_h, price, tp)
    plan.candidates = caps
    return plan


def _account(plan: Plan, caps: list[Capacity], s: Setting, pillars: Pillars, econ: Economics, kg_gpu_h: np.ndarray,
             kg_host_h: np.ndarray, price: np.ndarray, tp: np.ndarray) -> None:
    """Carbon, energy and cost of a plan, whatever objective chose it (pure accounting)."""
    H = len(s.intensity_g_per_kwh)
    p_act = np.array([c.active_w for c in caps])
    e_req = np.array([c.dynamic_j_per_request for c in caps])
    hourly_j = plan.active @ (p_act * 3600.0) + (plan.online + plan.offline_gpu) @ e_req
    if econ.host_cpu_capacity is not None:
        hourly_j = hourly_j + plan.offline_cpu * econ.host_cpu_capacity.dynamic_j_per_request
    plan.hourly_energy_j = hourly_j
    plan.energy_kwh = float(hourly_j.sum() * s.pue / J_PER_KWH)
    plan.operational_kg = float((hourly_j * s.intensity_g_per_kwh).sum() * s.pue / J_PER_KWH / 1000.0)
    plan.embodied_gpu_kg = float(H * (plan.provisioned * tp * kg_gpu_h).sum())
    plan.embodied_host_kg = float(H * (plan.nodes * kg_host_h).sum())
    plan.cost_usd = float(H * (plan.provisioned * tp * price).sum() + plan.energy_kwh * econ.electricity_usd_per_kwh)
