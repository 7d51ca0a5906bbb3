"""A second lower bound for a long period: the whole period with its offline work pooled.

The week blocks of `blocks.solve_long` bound each block alone, so work a block leaves past its end
costs only its energy there: a fleet just short of the period's load (each block leaving a little
for the next) looks as cheap as one that serves it all, and the bound can sit far below every real
plan. This relaxation keeps the period's one fleet and its capacity over every hour, and drops
the offline deadlines instead (offline work may run in any hour):

- hours of the same online demand and capacity shares, sorted by their weight (carbon: their
  intensity), are pooled into groups of consecutive rank, each costed at its lowest weight;
- per group and candidate: replica-hours (integer, at most the group's hours x the fleet) and the
  requests they serve (at most their capacity); the group's online requests are served in it,
  every request of the period somewhere; every hour has at least the replicas its online load
  needs; host CPUs (Reuse) within their cores in the group's hours;
- fleet and nodes as in the MILP, over the whole period.

Every plan of the period is a solution of it (sum its hours into their groups), at no more cost,
so its optimum, and the solver's dual bound, are lower bounds on the period's optimum.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, sparse

from bench.carbon.planning import highs
from bench.carbon.serving.capacity import Capacity

GROUPS = 240  # groups of hours per period (more: tighter, a larger MILP)
TIME_LIMIT_S = 3.0  # the dual bound at a stop is still a bound (a weaker one)


def bound(caps: list[Capacity], online: np.ndarray, offline: np.ndarray, scale: np.ndarray, weight: np.ndarray,
          fleet_cost: np.ndarray, node_cost: np.ndarray, type_of: np.ndarray, per_node: np.ndarray, tp: np.ndarray,
          host: Capacity | None) -> tuple[float, bool]:
    """The relaxation's lower bound on the objective. `online`, `offline`, `weight` [H] (weight:
    objective per joule of the hour); `scale` [H, C] capacity shares; `fleet_cost` [C] per
    provisioned replica over the period, `node_cost` [T] per node; `host`: Reuse's host-CPU
    capacity per node, or None. Returns (bound, whether the solve stopped at its time limit);
    -inf where no bound was found."""
    H, C = scale.shape
    T = len(node_cost)
    rows = np.column_stack([online, scale])
    _, kind = np.unique(rows, axis=0, return_inverse=True)
    kind = kind.ravel()
    groups: list[np.ndarray] = []
    for k in np.unique(kind):
        hours = np.flatnonzero(kind == k)
        hours = hours[np.argsort(weight[hours], kind="stable")]
        parts = max(1, round(GROUPS * len(hours) / H))
        for g in np.array_split(hours, parts):
            # Adjacent groups of one lowest weight are one: costed alike, apart they only make
            # equal solutions (a flat objective's hundreds of them slow the solver for nothing).
            if len(g) and groups and len(groups[-1]) and kind[groups[-1][0]] == k \
                    and weight[g].min() == weight[groups[-1]].min():
                groups[-1] = np.concatenate([groups[-1], g])
            elif len(g):
                groups.append(g)
    G = len(groups)
    size = np.array([len(g) for g in groups], float)
    w_min = np.array([weight[g].min() for g in groups])
    on_g = np.array([online[g].sum() for g in groups])
    need = np.array([online[g].max() for g in groups])
    sc = np.array([scale[g[0]] for g in groups])  # one kind per group: one row of shares
    rate = np.array([c.requests_per_hour for c in caps])
    p_act = np.array([c.active_w for c in caps])
    e_req = np.array([c.dynamic_j_per_request for c in caps])
    e_cpu = host.dynamic_j_per_request if host is not None else 0.0

    U, W = 0, G * C  # replica-hours, requests served [G, C]
    Z = 2 * G * C  # host-CPU requests [G]
    N = Z + G  # fleet [C]
    M = N + C  # nodes [T]
    nvar = M + T
    ug = U + np.arange(G * C).reshape(G, C)
    wg = W + np.arange(G * C).reshape(G, C)
    cost = np.zeros(nvar)
    cost[ug] = w_min[:, None] * p_act[None, :] * 3600.0
    cost[wg] = w_min[:, None] * e_req[None, :]
    cost[Z:Z + G] = w_min * e_cpu
    cost[N:N + C] = fleet_cost
    cost[M:M + T] = node_cost

    r, c_, v, lo, hi = [], [], [], [], []
    row = 0

    def add(cols, coefs, low, high):
        nonlocal row
        r.extend([row] * len(cols))
        c_.extend(cols)
        v.extend(coefs)
        lo.append(low)
        hi.append(high)
        row += 1

    for g in range(G):
        add(list(wg[g]), [1.0] * C, on_g[g], np.inf)  # its online requests served in it
        for j in range(C):
            add([wg[g, j], ug[g, j]], [1.0, -sc[g, j] * rate[j]], -np.inf, 0.0)  # within capacity
            add([ug[g, j], N + j], [1.0, -size[g]], -np.inf, 0.0)  # at most the fleet every hour
        # every hour of it has the replicas its online load needs (at least one where it has any)
        best = float(np.max(sc[g] * rate))
        if need[g] > 0 and best > 0:
            add(list(ug[g]), [1.0] * C, size[g] * math.ceil(need[g] / best - 1e-9), np.inf)
        if host is not None:
            add([Z + g] + [M + t for t in range(T)], [1.0] + [-host.requests_per_hour * size[g]] * T, -np.inf, 0.0)
            add([Z + g] + list(ug[g]), [1.0] + list(-host.requests_per_hour * tp / per_node[type_of]), -np.inf, 0.0)
    total = float(np.sum(online) + np.sum(offline))
    add(list(wg.ravel()) + list(range(Z, Z + G)), [1.0] * (G * C + G), total, total)  # all served, anywhere
    for t in range(T):
        members = np.flatnonzero(type_of == t)
        add([M + t] + list(N + members), [per_node[t]] + list(-tp[members]), 0.0, per_node[t] - 1.0)
    a = sparse.csr_array((v, (r, c_)), shape=(row, nvar))
    upper = np.full(nvar, np.inf)
    if host is None:
        upper[Z:Z + G] = 0.0
    integrality = np.zeros(nvar)
    integrality[U:U + G * C] = 1
    integrality[N:] = 1
    res = highs.milp(cost, [optimize.LinearConstraint(a, lo, hi)], integrality, optimize.Bounds(np.zeros(nvar), upper),
                     TIME_LIMIT_S, 1e-3)
    dual, hit = res.bound, res.status == "limit"
    if not np.isfinite(dual):
        return -math.inf, hit
    return float(dual), hit
