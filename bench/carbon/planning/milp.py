"""Capacity planning over the hours of a period as a MILP (HiGHS, `highs.py`).

Each hour h has its own online requests (served that hour by active replicas within their SLO
capacity) and its own offline arrivals, which may wait up to `deadline_h` hours (carbon-aware
time shifting, as a backlog carried from hour to hour) and may run on the hosts' CPUs (Reuse).
Provisioned replicas carry embodied carbon for every hour, and so do the nodes that hold them:
a node holds up to `gpus_per_node` GPUs of one type, shared by any candidates of that type.
Active replicas draw their idle power plus a dynamic energy per request (from simulation,
`capacity.py`); parked replicas are off.

Variables, per hour h and candidate c: active replicas u (integer) and requests w served; per
hour: offline requests Y served on GPUs, z served by host CPUs, and the offline backlog b left at
its end; per candidate: provisioned replicas n (integer); per GPU type t: nodes m (integer). An
hour's online and offline requests cost the same on a candidate and share its capacity, so only
their sum per candidate is a variable (separate ones would make every split of it an equal
optimum, a degeneracy that slowed the solver for nothing); a plan reports each candidate's
served requests split in the hour's proportion of online to offline work. Objectives: carbon (operational at the hour's intensity x PUE, plus amortised
embodied), energy or cost. Ties are broken lexicographically, each by a solve of its own under
the previous optimum: fewest GPUs, then fewest nodes (never by a small weight, which would sit
inside the solver's tolerance). The solver's gap and whether it hit its time limit are kept.

Without waiting (shift off, or a one-hour deadline) the hours are independent given the fleet,
and hours of the same demand and derating are one variable set weighted by their summed
intensity (`hour_types`): exact, and a year of a replayed trace is one hour's MILP. With waiting,
a period longer than `solver.LONG_H` is solved by the fleet search (`fleets.py`) and in blocks
(`blocks.py`), each solve of them this MILP over a block's hours (`Block`); `solver.solve` is the
front door.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import optimize, sparse

from bench.carbon.inputs import embodied
from bench.carbon.planning import highs
from bench.carbon.planning.fleet_cuts import FleetCut, fleet_cut
from bench.carbon.planning.pillars import Pillars, host_for, lifetimes_for
from bench.carbon.planning.errors import PlanError
from bench.carbon.planning.setting import J_PER_KWH, Economics, Plan, Setting
from bench.carbon.serving.capacity import Capacity
TIME_LIMIT_S = 60.0  # per solve; a plan says when a solve stopped at it
MIN_SOLVE_S = 3.0  # the least a solve gets once its plan's budget (`solve_by`) is spent: it must still give a plan
TIE_MIN_S = 5.0
BLOCK_GAP = 0.01  # each block to the bar; the blocks' bounds add up, so the period's gap is reported from them
MIP_GAP = 0.01  # relative gap HiGHS stops at (the gap reached is reported per plan; the bar is 1%)


@dataclass
class _Layout:
    """Column offsets of the variable vector."""

    H: int
    C: int
    T: int

    def __post_init__(self) -> None:
        H, C = self.H, self.C
        self.u, self.w, self.y = 0, H * C, 2 * H * C
        self.z, self.b = 2 * H * C + H, 2 * H * C + 2 * H
        self.n = 2 * H * C + 3 * H
        self.m = self.n + C
        self.i = self.m + self.T  # the offline backlog the hours inherit (one column)
        self.size = self.i + 1

    def hc(self, base: int) -> np.ndarray:
        """Column indices [H, C] of an hour x candidate block."""
        return base + np.arange(self.H * self.C).reshape(self.H, self.C)


class _Rows:
    """Sparse constraint rows built from index arrays (no Python loop over the hours)."""

    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.count = 0

    def add(self, terms: list[tuple[np.ndarray, np.ndarray | float]], lo, hi) -> None:
        """Rows k = 0..K-1 with sum over terms of coef[k, ...] * var[cols[k, ...]] in [lo, hi]."""
        k = None
        for cols, coef in terms:
            cols = np.asarray(cols)
            k = cols.shape[0] if k is None else k
            rows = np.broadcast_to((self.count + np.arange(k)).reshape((k,) + (1,) * (cols.ndim - 1)), cols.shape)
            self.r.append(rows.ravel())
            self.c.append(cols.ravel())
            self.v.append(np.broadcast_to(np.asarray(coef, float), cols.shape).ravel())
        self.lo.append(np.broadcast_to(np.asarray(lo, float), (k,)).copy())
        self.hi.append(np.broadcast_to(np.asarray(hi, float), (k,)).copy())
        self.count += k

    def constraint(self, nvar: int) -> optimize.LinearConstraint:
        a = sparse.csr_array((np.concatenate(self.v), (np.concatenate(self.r), np.concatenate(self.c))),
                             shape=(self.count, nvar))
        return optimize.LinearConstraint(a, np.concatenate(self.lo), np.concatenate(self.hi))


def _add_cover_cuts(rows: _Rows, L: _Layout, online: np.ndarray, rate: np.ndarray) -> None:
    """Two valid inequalities that the integer plans satisfy and the LP relaxation does not, so the
    solver's bound starts near the optimum (without them the relaxation ran a replica at a sliver
    of its idle power and bought a fraction of a node: about half the optimum, and each fleet-free
    week block took seconds to close).

    - Online cover, per hour with online work: sum_c min(rate_hc, online_h) / online_h * u_hc >= 1.
      Valid for whole u: a replica whose capacity covers the hour's online requests counts 1, and
      otherwise the replicas' capacities must add up to them. It makes each such hour pay at least
      one active replica's idle power.
    - Nodes: some hour has online work, so some replica, hence some node, is provisioned:
      sum_t m_t >= 1."""
    busy = np.flatnonzero(online > 0)
    if not len(busy):
        return
    share = np.minimum(rate[busy], online[busy, None]) / online[busy, None]
    rows.add([(L.hc(L.u)[busy], share)], 1.0, np.inf)
    rows.add([(np.array([L.m + np.arange(L.T)]), 1.0)], 1.0, np.inf)


def _excluded(c: Capacity, derate: dict[str, np.ndarray] | None) -> bool:
    """Derated to nothing in every hour: taken out of the plan (`run.solve_verified`)."""
    return bool(derate) and c.candidate.name in derate and not np.any(derate[c.candidate.name] > 0)


def allowed_candidates(s: Setting, levers, derate: dict[str, np.ndarray] | None) -> list[Capacity]:
    """The candidates a plan may use: feasible, open to its levers, and not taken out."""
    return [c for c in s.capacities if c.feasible and (levers.any_candidate or c.candidate.name == s.reference)
            and not _excluded(c, derate)]


def per_hour(values, H: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, float), (H,)).astype(float)


@dataclass
class Block:
    """Hours solved apart from the rest of a long period (`blocks.solve_long`): the backlog they inherit,
    whether they may leave one (bounded by `waiting`, at `defer_cost` per request left), and the
    replicas fixed for them (None: chosen)."""

    caps: list[Capacity]
    waiting: np.ndarray
    backlog_in: float = 0.0
    # None: the inherited backlog is `backlog_in`, fixed. A price: it is a variable in [0,
    # `inherit_max`], each request of it earning that price (a block of a Lagrangian bound,
    # `blocks.priced_bound`).
    inherit_price: float | None = None
    inherit_max: float = 0.0
    end_free: bool = False
    defer_cost: float = 0.0
    fixed_n: np.ndarray | None = None
    hold_at: int = -1  # >= 0: the backlog at this hour of the block is `backlog_in` (it repeats)
    rel_gap: float = 0.0  # the solver's stopping gap; 0: BLOCK_GAP
    relax: bool = False  # the LP relaxation only (a quick lower bound)
    # With `relax` and `fixed_n`: the largest fleet the cut from this LP's duals must hold for (the
    # solve's `cut`, a bound on every fleet up to it: `fleet_cuts`); None: no cut.
    fleet_max: np.ndarray | None = None


def solve_hours(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
                derate: dict[str, np.ndarray] | None = None, time_limit_s: float = TIME_LIMIT_S,
                block: Block | None = None, ties: bool = True, solve_by: float = math.inf):
    """One MILP over the hours of `s`: the whole period (`block` None: the plan minimising
    `objective`, `solver.solve` calls it for a period it does not split) or a block of a long one
    (`blocks.py`, `fleets.py`: its raw solution, layout and candidates). `derate`: candidate ->
    per-hour share of its capacity the plan may use (re-planning after a verification found the
    hour's replicas overloaded). `ties=False` leaves the tie-break solves for `break_ties` (a plan
    that fails its verification needs none). `solve_by` (`time.monotonic()`): the plan's solving
    budget ends there; past it a solve still gets `MIN_SOLVE_S` (it must give a plan)."""
    levers = pillars.levers()
    period_h = len(s.intensity_g_per_kwh)
    deadline = s.deadline_h if levers.offline_within_deadline else 1
    decoupled = block is None and deadline <= 1
    if block is None:
        time_limit_s = within(time_limit_s, solve_by)
    caps = block.caps if block is not None else merge_near(
        undominated(allowed_candidates(s, levers, derate), period_h, derate), period_h, derate)
    C = len(caps)
    types = sorted({c.candidate.hardware for c in caps})
    online, offline = per_hour(s.online_per_hour, period_h), per_hour(s.offline_per_hour, period_h)
    rate = np.array([c.requests_per_hour for c in caps])
    scale = np.ones((period_h, C))
    for j, c in enumerate(caps):
        if derate and c.candidate.name in derate:
            scale[:, j] = derate[c.candidate.name]
    per_j = {"carbon": s.intensity_g_per_kwh * s.pue / J_PER_KWH / 1000.0,
             "energy": np.full(period_h, s.pue / J_PER_KWH),
             "cost": np.full(period_h, s.pue / J_PER_KWH * econ.electricity_usd_per_kwh)}[objective]
    hour_type = None
    if decoupled:
        # No offline work waits past its hour, so given the replicas provisioned each hour's best
        # choice depends only on its demand and derating (every cost of the hour scales with its
        # weight): hours alike are one variable set, weighted by their summed weight. Exact.
        hour_type, first = hour_types(online, offline, scale)
        online, offline, scale = online[first], offline[first], scale[first]
        per_j = np.bincount(hour_type, weights=per_j, minlength=len(first))
    H = len(online)  # hours (or hour types) of the MILP; embodied terms count the whole period
    L = _Layout(H, C, len(types))
    reuse = levers.offline_on_host_cpus and econ.host_cpu_capacity is not None and econ.host_cpu_capacity.feasible

    gpus_tab = embodied.gpus()
    tp = np.array([c.candidate.device.devices for c in caps], float)
    type_of = np.array([types.index(c.candidate.hardware) for c in caps])
    per_node = np.array([float(gpus_tab.loc[t, "gpus_per_node"]) for t in types])
    kg_gpu_h = np.array([_embodied(s, c.candidate.hardware, levers)[0] for c in caps])
    kg_host_h = np.array([_embodied(s, t, levers)[1] for t in types])
    price = np.array([float(gpus_tab.loc[c.candidate.hardware, "price_usd_per_gpu_hour"]) for c in caps])
    e_req = np.array([c.dynamic_j_per_request for c in caps])
    p_act = np.array([c.active_w for c in caps])
    e_cpu = econ.host_cpu_capacity.dynamic_j_per_request if reuse else 0.0

    # Objective: a weight per joule of each hour (carbon: its intensity), then embodied / price terms.
    cost = np.zeros(L.size)
    cost[L.hc(L.u)] = per_j[:, None] * p_act[None, :] * 3600.0
    cost[L.hc(L.w)] = per_j[:, None] * e_req[None, :]
    cost[L.z:L.z + H] = per_j * e_cpu
    if objective == "carbon":
        cost[L.n:L.n + C] = period_h * tp * kg_gpu_h
        cost[L.m:L.m + L.T] = period_h * kg_host_h
    elif objective == "cost":
        cost[L.n:L.n + C] = period_h * tp * price

    rows = _Rows()
    hours = np.arange(H)
    # Every online request served in its hour, with the offline ones the GPUs take then ...
    rows.add([(L.hc(L.w), 1.0), ((L.y + hours)[:, None], -1.0)], online, online)
    # ... within the capacity of the hour's active replicas.
    rows.add([(L.hc(L.w).ravel()[:, None], 1.0),
              (L.hc(L.u).ravel()[:, None], -(scale * rate[None, :]).ravel()[:, None])], -np.inf, 0.0)
    n_cols = np.broadcast_to(L.n + np.arange(C), (H, C))
    rows.add([(L.hc(L.u).ravel()[:, None], 1.0), (n_cols.ravel()[:, None], -1.0)], -np.inf, 0.0)
    _add_cover_cuts(rows, L, online, scale * rate[None, :])
    # Offline backlog: b_h = b_{h-1} + arrivals_h - served_h; what arrived deadline hours ago is done.
    prev_b = np.where(hours > 0, L.b + hours - 1, L.b + hours)  # hour 0 has no previous backlog
    prev_coef = np.where(hours > 0, -1.0, 0.0)
    inherited = np.where(hours == 0, L.i, prev_b)  # hour 0 takes the inherited backlog (a column)
    rows.add([((L.b + hours)[:, None], 1.0), (prev_b[:, None], prev_coef[:, None]), ((L.y + hours)[:, None], 1.0),
              ((L.z + hours)[:, None], 1.0), (inherited[:, None], np.where(hours == 0, -1.0, 0.0)[:, None])],
             offline, offline)
    waiting = waiting_bounds(offline, deadline) if block is None else block.waiting.copy()
    if block is None or not block.end_free:
        waiting[-1] = 0.0  # everything is served by the end of the period
    else:
        cost[L.b + H - 1] = block.defer_cost
    if reuse:  # host CPUs of every node ...
        rph = econ.host_cpu_capacity.requests_per_hour
        rows.add([((L.z + hours)[:, None], 1.0), (np.broadcast_to(L.m + np.arange(L.T), (H, L.T)), -rph)], -np.inf, 0.0)
        # ... and only of the hosts whose GPUs are active that hour (counted as a share of a node, so
        # never more than there is): otherwise an objective that does not price GPUs provisions idle
        # ones to get their hosts' cores.
        rows.add([((L.z + hours)[:, None], 1.0), (L.hc(L.u), -(rph * tp / per_node[type_of])[None, :])], -np.inf, 0.0)
    # Nodes of type t hold its candidates' GPUs.
    for t in range(L.T):
        members = np.flatnonzero(type_of == t)
        # ... and no more nodes than those GPUs fill: Reuse runs on the spare cores of GPU hosts, it
        # buys no CPU-only nodes (an objective that does not price nodes would buy them for free).
        rows.add([(np.array([[L.m + t]]), per_node[t]), ((L.n + members)[None, :], -tp[members][None, :])], 0.0,
                 per_node[t] - 1.0)
    upper = np.full(L.size, np.inf)
    upper[L.b:L.b + H] = waiting
    upper[L.i] = block.backlog_in if block is not None else 0.0
    if not reuse:
        upper[L.z:L.z + H] = 0.0
    integrality = np.zeros(L.size)
    integrality[L.u:L.u + H * C] = 1
    integrality[L.n:L.i] = 1  # replicas and nodes (not the inherited backlog)
    if block is not None and block.relax:
        integrality[:] = 0
    lower = np.zeros(L.size)
    lower[L.i] = upper[L.i]
    if block is not None and block.inherit_price is not None:
        lower[L.i], upper[L.i] = 0.0, block.inherit_max
        cost[L.i] = -block.inherit_price
    if block is not None and block.fixed_n is not None:
        # A fixed fleet fixes its nodes too: the fewest that hold its GPUs, the only whole number the
        # node rows allow. Left to the LP relaxation, it bought a fraction of a node of each GPU type,
        # and the fleet search's floors (its LPs at the largest fleets) fell short by up to a node per
        # type (on the long-prompt year, H100s alone with Reduce's host: 728.8 against 801 kg).
        lower[L.n:L.n + C] = upper[L.n:L.n + C] = block.fixed_n
        lower[L.m:L.m + L.T] = upper[L.m:L.m + L.T] = np.ceil(
            np.bincount(type_of, weights=np.asarray(block.fixed_n, float) * tp, minlength=L.T) / per_node - 1e-9)
    if block is not None and block.hold_at >= 0:
        if block.backlog_in > upper[L.b + block.hold_at] + 1e-9:
            raise Infeasible(f"plan {name}: a backlog of {block.backlog_in:.6g} cannot wait at hour {block.hold_at}")
        lower[L.b + block.hold_at] = upper[L.b + block.hold_at] = block.backlog_in
    bounds = optimize.Bounds(lower, upper)
    base = rows.constraint(L.size)

    started = time.perf_counter()
    plan_notes = [f"MILP over {C} undominated of {len(s.capacities)} candidates (near-copies within {NEAR:.0%} merged)"
                  + (f", {H} hour type(s) for the {period_h} h (no waiting: hours of the same demand and derating are "
                     "one, weighted by their summed weight; exact)" if hour_type is not None and H < period_h else "")]
    # Blocks solve tighter: their bounds add up, and so do their gaps.
    first = _milp(cost, [base], integrality, bounds, time_limit_s, name, rel_gap=MIP_GAP if block is None else (block.rel_gap or BLOCK_GAP))
    if block is not None:  # a block: its raw solution and bound, for `blocks.py` and `fleets.py` to assemble
        if block.relax and block.fixed_n is not None and block.fleet_max is not None and first.row_dual is not None:
            first.cut = fleet_cut(cost, base.A, base.lb, base.ub, lower,
                                  _safe_upper(L, upper, online, offline, np.asarray(block.fleet_max, float)),
                                  first.row_dual, L.n + np.arange(C), L.m + np.arange(L.T))
        return first, L, caps
    problem = _Problem(s, objective, pillars, econ, name, L, caps, types, cost, base, integrality, bounds, time_limit_s,
                       first, time.perf_counter() - started, plan_notes, hour_type)
    return break_ties(problem) if ties else _plan(problem, first.x)


def within(limit_s: float, solve_by: float, least_s: float = MIN_SOLVE_S) -> float:
    """A solve's time limit inside its plan's budget: what is left before `solve_by`, at least `least_s`."""
    return min(limit_s, max(least_s, solve_by - time.monotonic()))


@dataclass
class _Problem:
    """A solved MILP and what its tie-break solves need."""

    s: Setting
    objective: str
    pillars: Pillars
    econ: Economics
    name: str
    L: _Layout
    caps: list[Capacity]
    types: list[str]
    cost: np.ndarray
    base: optimize.LinearConstraint
    integrality: np.ndarray
    bounds: optimize.Bounds
    time_limit_s: float
    first: "_Solved"
    first_s: float
    notes: list[str]
    hour_type: np.ndarray | None = None  # hour -> its variables' hour type (None: one set per hour)


def break_ties(problem: "_Problem | Plan", solve_by: float | None = None) -> Plan:
    """The plan of a solved MILP with its ties broken lexicographically: fewest GPUs, then fewest
    nodes, among plans no worse than the optimum found (each a solve of its own). Takes the
    problem, or a plan solved with `ties=False` (its problem kept in `solver_state`). A long
    period's plan (no ties to break) gets the bound narrowing it was solved without (`Narrowing`),
    within `solve_by` (default: the budget it was solved with); a short period's tie-breaks keep
    to what is left before `solve_by` too, at least `MIN_SOLVE_S` each (ties are always broken)."""
    if isinstance(problem, Plan):
        if problem.solver_state is None:  # solved in blocks, or already broken
            return problem
        if isinstance(problem.solver_state, Narrowing):  # a long period: no ties to break, a bound to narrow
            started, before, state, problem.solver_state = time.perf_counter(), problem.solve_s, problem.solver_state, None
            narrowed = state(solve_by)
            narrowed.solver_state = None
            narrowed.solve_s = before + time.perf_counter() - started
            return narrowed
        problem = problem.solver_state
    L, cost, base, integrality, bounds, first = (problem.L, problem.cost, problem.base, problem.integrality,
                                                 problem.bounds, problem.first)
    C, time_limit_s, name = L.C, problem.time_limit_s, problem.name
    plan_notes = list(problem.notes)
    started = time.perf_counter()
    best = first.x
    gpus = np.zeros(L.size)
    gpus[L.n:L.n + C] = [c.candidate.device.devices for c in problem.caps]
    nodes = np.zeros(L.size)
    nodes[L.m:L.m + L.T] = 1.0
    bound = first.fun + max(abs(first.fun), 1.0) * 1e-9
    keep = [base, optimize.LinearConstraint(sparse.csr_array(cost[None, :]), -np.inf, bound)]
    # A tie-break refines a solution already in hand: it gets twice the first solve's time (at
    # least TIE_MIN_S), and where it stops short the better of the two stands, said in a note (the
    # objective's optimality is the first solve's, and its time-limit flag is that solve's).
    tie_limit_s = min(time_limit_s, max(TIE_MIN_S, 2.0 * problem.first_s))
    if solve_by is not None:  # the plan's solving budget (`run.solve_verified`)
        tie_limit_s = within(tie_limit_s, solve_by)
    for label, tie in (("GPUs", gpus), ("nodes", nodes)):
        # The counts are whole numbers: a gap under one of them proves the fewest (the first
        # solution's count bounds the optimum), so the solver stops as soon as it has that.
        count = float(tie @ best)
        res = _milp(tie, keep, integrality, bounds, tie_limit_s, name, required=False,
                    rel_gap=min(MIP_GAP, 0.99 / max(count, 1.0)) if count > 1 else 0.0)
        if res is None or res.fun > count + 1e-6:  # the solution in hand stands
            plan_notes.append(f"the fewest-{label} tie-break found nothing better in {tie_limit_s:.0f} s: "
                              "ties as the solve before left them")
            break
        if res.hit_limit:
            plan_notes.append(f"the fewest-{label} tie-break stopped at {tie_limit_s:.0f} s: the fewest not proven")
        best = res.x
        keep = keep + [optimize.LinearConstraint(sparse.csr_array(tie[None, :]), -np.inf, res.fun + 1e-6)]
    plan = _plan(dataclasses.replace(problem, notes=[n for n in plan_notes if n]), best)
    plan.solver_state = None
    plan.solve_s = problem.first_s + time.perf_counter() - started
    return plan


def _plan(problem: _Problem, v: np.ndarray) -> Plan:
    """The plan of solution `v`; it keeps its problem (`solver_state`) for `break_ties`."""
    s, L, caps, types = problem.s, problem.L, problem.caps, problem.types
    H, C = L.H, L.C
    levers = problem.pillars.levers()
    period_h = len(s.intensity_g_per_kwh)
    every = np.arange(period_h) if problem.hour_type is None else problem.hour_type  # hour -> its variables
    online = per_hour(s.online_per_hour, period_h)
    tp = np.array([c.candidate.device.devices for c in caps], float)
    type_of = np.array([types.index(c.candidate.hardware) for c in caps])
    per_node = np.array([float(embodied.gpus().loc[t, "gpus_per_node"]) for t in types])
    u = np.round(v[L.u:L.u + H * C].reshape(H, C))[every]
    # Nothing provisioned that carries no load in any hour: nodes for the GPUs provisioned (CPU work
    # runs only on hosts of active GPUs, so it needs no more).
    provisioned = u.max(axis=0)
    gpus_of_type = np.array([(provisioned * tp)[type_of == t].sum() for t in range(L.T)])
    node_count = np.maximum(np.ceil(gpus_of_type / per_node - 1e-9), 0.0) + 0.0  # never -0
    w = np.maximum(v[L.w:L.w + H * C].reshape(H, C), 0.0)[every]
    plan = Plan(problem.name, problem.objective, problem.pillars, u, *split_served(w, online), v[L.z:L.z + H][every],
                provisioned, node_count)
    plan.node_types = types
    plan.notes.extend(n for n in problem.notes if n)
    plan.solver_gap, plan.solver_hit_time_limit = problem.first.gap, problem.first.hit_limit
    plan.solve_s = problem.first_s
    plan.solver_state = problem
    if not levers.any_candidate:
        plan.notes.append(f"rightsize off: only the reference {s.reference}")
    account(plan, caps, s, problem.pillars, problem.econ)
    plan.candidates = caps
    return plan

class Narrowing:
    """What a long solve left undone to narrow its plan's bound (`solver.solve(narrow=False)`: a round that
    may be re-planned); `break_ties` does it once the plan has met its SLO. Called, it returns the
    plan with its gap against the tighter bound (the same plan, or a better one the work found),
    within `solve_by` (what is left of the plan's budget then; by default the solve's own)."""

    def __init__(self, work, solve_by: float) -> None:
        self.work, self.solve_by = work, solve_by

    def __call__(self, solve_by: float | None = None) -> Plan:
        return self.work(self.solve_by if solve_by is None else solve_by)


def served(L: _Layout, v: np.ndarray) -> np.ndarray:
    return np.maximum(v[L.w:L.w + L.H * L.C].reshape(L.H, L.C), 0.0)


def fleet_costs(s: Setting, objective: str, levers, caps: list[Capacity], types: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The objective's fleet terms over the period: per replica of each candidate [C] and per node
    of each GPU type [T] (carbon: embodied; cost: GPU price; energy: none)."""
    H = len(s.intensity_g_per_kwh)
    tp = np.array([c.candidate.device.devices for c in caps], float)
    fleet, nodes = np.zeros(len(caps)), np.zeros(len(types))
    if objective == "carbon":
        fleet = H * tp * np.array([_embodied(s, c.candidate.hardware, levers)[0] for c in caps])
        nodes = H * np.array([_embodied(s, t, levers)[1] for t in types])
    elif objective == "cost":
        gpus_tab = embodied.gpus()
        fleet = H * tp * np.array([float(gpus_tab.loc[c.candidate.hardware, "price_usd_per_gpu_hour"]) for c in caps])
    return fleet, nodes


def split_served(w: np.ndarray, online: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(online, offline) requests per hour and candidate, from `w` served [H, C]: each candidate's
    served requests split in its hour's proportion of online work (any split serves the same;
    this one is stated)."""
    total = w.sum(axis=1, keepdims=True)
    share = np.divide(online[:, None], total, out=np.zeros_like(total), where=total > 0)
    x = w * np.minimum(share, 1.0)
    return x, w - x


def assemble(name, objective, pillars, s, econ, caps, u, x, y, z) -> Plan:
    types = sorted({c.candidate.hardware for c in caps})
    tp = np.array([c.candidate.device.devices for c in caps], float)
    type_of = np.array([types.index(c.candidate.hardware) for c in caps])
    per_node = np.array([float(embodied.gpus().loc[t, "gpus_per_node"]) for t in types])
    provisioned = u.max(axis=0)
    gpus_of_type = np.array([(provisioned * tp)[type_of == t].sum() for t in range(len(types))])
    node_count = np.maximum(np.ceil(gpus_of_type / per_node - 1e-9), 0.0) + 0.0
    plan = Plan(name, objective, pillars, u, x, y, z, provisioned, node_count, node_types=types)
    account(plan, caps, s, pillars, econ)
    plan.candidates = caps
    return plan


def undominated(caps: list[Capacity], H: int, derate: dict[str, np.ndarray] | None) -> list[Capacity]:
    """Candidates no other one beats on every count: one of the same GPU type and replica size
    (same embodied carbon, price and node share) serving at least as many requests in every hour,
    at no more energy per request and no more active power, is never worse; dropping the others
    leaves the optimum unchanged and the MILP much smaller."""
    def rate(c: Capacity) -> np.ndarray:
        return c.requests_per_hour * (derate.get(c.candidate.name, np.ones(H)) if derate else np.ones(H))

    def beats(a: Capacity, b: Capacity) -> bool:
        same = a.candidate.hardware == b.candidate.hardware and a.candidate.device.devices == b.candidate.device.devices
        return same and bool((rate(a) >= rate(b)).all()) and a.dynamic_j_per_request <= b.dynamic_j_per_request \
            and a.active_w <= b.active_w

    kept: list[Capacity] = []
    for i, c in enumerate(caps):
        # Of two equal ones the first is kept (strict order by position breaks exact ties).
        if not any(beats(o, c) and (not beats(c, o) or j < i) for j, o in enumerate(caps) if j != i):
            kept.append(c)
    return kept


NEAR = 0.01  # candidates within this share of another on every count are one (the model resolves far less)


def merge_near(caps: list[Capacity], H: int, derate: dict[str, np.ndarray] | None, rel: float = NEAR) -> list[Capacity]:
    """Candidates another one of the same GPU type and replica size matches within `rel` on every
    count (capacity in every hour, energy per request, active power) are merged into it: their
    estimates differ by less than the simulation resolves (capacity to 19%), and near-copies make
    the MILP's search long for nothing (a batch cap past what memory or the SLO lets a replica
    use, a prompt budget no prompt reaches). The kept one is the larger capacity, then the lower
    energy. The optimum over the merged set is within about `rel` of the optimum over all."""
    def rate(c: Capacity) -> np.ndarray:
        return c.requests_per_hour * (derate.get(c.candidate.name, np.ones(H)) if derate else np.ones(H))

    def covers(a: Capacity, b: Capacity) -> bool:
        same = a.candidate.hardware == b.candidate.hardware and a.candidate.device.devices == b.candidate.device.devices
        return same and bool((rate(a) >= rate(b) * (1 - rel)).all()) \
            and a.dynamic_j_per_request <= b.dynamic_j_per_request * (1 + rel) and a.active_w <= b.active_w * (1 + rel)

    order = sorted(range(len(caps)), key=lambda i: (-float(rate(caps[i]).min()), caps[i].dynamic_j_per_request, i))
    kept: list[int] = []
    for i in order:
        if not any(covers(caps[k], caps[i]) for k in kept):
            kept.append(i)
    return [caps[i] for i in sorted(kept)]


def hour_types(online: np.ndarray, offline: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hours with the same online and offline requests and capacity shares are one type: (type of
    each hour, first hour of each type), types in order of first appearance."""
    rows = np.column_stack([online, offline, scale])
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # types numbered by first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse.ravel()], first[order]


def waiting_bounds(offline: np.ndarray, deadline: int) -> np.ndarray:
    """Per hour, the offline requests that may still wait at its end: those of the last
    `deadline` - 1 hours."""
    if deadline <= 1:
        return np.zeros(len(offline))
    c = np.concatenate([[0.0], np.cumsum(offline)])
    h = np.arange(len(offline))
    return c[h + 1] - c[np.maximum(0, h - deadline + 2)]


class Infeasible(PlanError):
    """The solver proved that no plan meets the constraints (not a stop at a limit)."""


@dataclass
class _Solved:
    x: np.ndarray
    fun: float
    gap: float
    hit_limit: bool
    bound: float = math.nan  # the solver's dual bound (a lower bound on the optimum)
    row_dual: np.ndarray | None = None  # an LP solved to optimality: its rows' duals
    cut: FleetCut | None = None  # a fixed-fleet LP's bound on other fleets (`fleet_cuts`)


def _milp(cost, constraints, integrality, bounds, time_limit_s: float, name: str, required: bool = True,
          rel_gap: float = MIP_GAP) -> _Solved | None:
    from bench.carbon.planning import parallel

    parallel.threads_started = True  # no fork after this (parallel.py)
    res = highs.milp(cost, constraints, integrality, bounds, time_limit_s, rel_gap)
    if res.x is None:
        if not required:
            return None
        # The planner's models are bounded below (costs are non-negative, or on a bounded column):
        # "infeasible or unbounded" is infeasible for them.
        raise (Infeasible if res.status in ("infeasible", "infeasible_or_unbounded") else PlanError)(
            f"plan {name}: the MILP found no feasible plan ({res.message})")
    return _Solved(res.x, res.fun, res.gap, res.status == "limit", res.bound, res.row_dual)  # no bound known: the gap is NaN


def _safe_upper(L: _Layout, upper: np.ndarray, online: np.ndarray, offline: np.ndarray,
                fleet_max: np.ndarray) -> np.ndarray:
    """Column upper bounds that every plan of a fleet no larger than `fleet_max` keeps, for the
    columns the model leaves unbounded: active replicas u_hc <= n_c <= fleet_max_c; the offline
    requests served, on GPUs (y_h) or host CPUs (z_h), at most all offline work and the inherited
    backlog (the backlog rows, with b >= 0); a candidate's requests w_hc at most the hour's online
    ones plus those (the first rows: sum_c w_hc = online_h + y_h)."""
    safe = np.asarray(upper, float).copy()
    offline_all = float(np.sum(offline)) + max(0.0, float(upper[L.i]))
    safe[L.hc(L.u)] = np.minimum(safe[L.hc(L.u)], np.broadcast_to(fleet_max, (L.H, L.C)))
    safe[L.hc(L.w)] = np.minimum(safe[L.hc(L.w)], (np.asarray(online, float) + offline_all)[:, None])
    for base in (L.y, L.z):
        safe[base:base + L.H] = np.minimum(safe[base:base + L.H], offline_all)
    return safe


def _embodied(s: Setting, hardware: str, levers) -> tuple[float, float]:
    """(per GPU, per node host) embodied kg per hour of `hardware` under the plan's levers."""
    return embodied.node_kg_per_hour(hardware, 1, host_for(s, hardware, levers), lifetimes_for(s, hardware, levers),
                                     s.embodied_level)


def account(plan: Plan, caps: list[Capacity], s: Setting, pillars: Pillars, econ: Economics) -> None:
    """Carbon, energy and cost of a plan, whatever chose it (pure accounting): GPU energy from its
    whole-fleet simulation once verified, from the planner's affine model before."""
    levers = pillars.levers()
    H = len(s.intensity_g_per_kwh)
    gpus_tab = embodied.gpus()
    tp = np.array([c.candidate.device.devices for c in caps], float)
    p_act = np.array([c.active_w for c in caps])
    e_req = np.array([c.dynamic_j_per_request for c in caps])
    price = np.array([float(gpus_tab.loc[c.candidate.hardware, "price_usd_per_gpu_hour"]) for c in caps])
    kg_gpu_h = np.array([_embodied(s, c.candidate.hardware, levers)[0] for c in caps])
    kg_host_h = np.array([_embodied(s, t, levers)[1] for t in plan.node_types])
    hourly_j = plan.active @ (p_act * 3600.0) + (plan.online + plan.offline_gpu) @ e_req
    plan.energy_method = "model: capacity-point energy per request + idle power of active replicas"
    v = plan.verification
    if v is not None and len(v.hours) == H and all(np.isfinite(h.gpu_energy_j) for h in v.hours):
        # Verified: the GPUs' energy is what the whole-fleet simulation of each hour spent.
        hourly_j = np.array([h.gpu_energy_j for h in v.hours])
        plan.energy_method = "simulated: whole-fleet steps of every hour + idle power of active replicas between them"
    if econ.host_cpu_capacity is not None:
        hourly_j = hourly_j + plan.offline_cpu * econ.host_cpu_capacity.dynamic_j_per_request
    plan.hourly_energy_j = hourly_j
    plan.energy_kwh = float(hourly_j.sum() * s.pue / J_PER_KWH)
    plan.operational_kg = float((hourly_j * s.intensity_g_per_kwh).sum() * s.pue / J_PER_KWH / 1000.0)
    plan.embodied_gpu_kg = float(H * (plan.provisioned * tp * kg_gpu_h).sum())
    plan.embodied_host_kg = float(H * (plan.nodes * kg_host_h).sum())
    plan.cost_usd = float(H * (plan.provisioned * tp * price).sum() + plan.energy_kwh * econ.electricity_usd_per_kwh)
