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
a period longer than `LONG_H` is solved in blocks (`solve_long`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, sparse

from bench.carbon.inputs import embodied
from bench.carbon.planning import highs
from bench.carbon.planning.pillars import Pillars, host_for, lifetimes_for
from bench.carbon.planning.errors import PlanError
from bench.carbon.planning.setting import J_PER_KWH, OBJECTIVES, Economics, Plan, Setting
from bench.carbon.serving.capacity import Capacity

TIME_LIMIT_S = 60.0  # per solve; a plan says when a solve stopped at it
MIN_SOLVE_S = 3.0  # the least a solve gets once its plan's budget (`solve_by`) is spent: it must still give a plan
LONG_H = 336  # a longer period with waiting is solved in blocks of about BLOCK_H hours, with a bound on the optimum
TIE_MIN_S = 5.0
BLOCK_H = 168
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


def _per_hour(values, H: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, float), (H,)).astype(float)


@dataclass
class Block:
    """Hours solved apart from the rest of a long period (`solve_long`): the backlog they inherit,
    whether they may leave one (bounded by `waiting`, at `defer_cost` per request left), and the
    replicas fixed for them (None: chosen)."""

    caps: list[Capacity]
    waiting: np.ndarray
    backlog_in: float = 0.0
    # None: the inherited backlog is `backlog_in`, fixed. A price: it is a variable in [0,
    # `inherit_max`], each request of it earning that price (a block of a Lagrangian bound,
    # `solve_long`).
    inherit_price: float | None = None
    inherit_max: float = 0.0
    end_free: bool = False
    defer_cost: float = 0.0
    fixed_n: np.ndarray | None = None
    hold_at: int = -1  # >= 0: the backlog at this hour of the block is `backlog_in` (it repeats)
    rel_gap: float = 0.0  # the solver's stopping gap; 0: BLOCK_GAP
    relax: bool = False  # the LP relaxation only (a quick lower bound)


def solve(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
          derate: dict[str, np.ndarray] | None = None, time_limit_s: float = TIME_LIMIT_S,
          block: Block | None = None, ties: bool = True, solve_by: float = math.inf, narrow: bool = True) -> Plan:
    """The plan minimising `objective`; `derate`: candidate -> per-hour share of its capacity the
    plan may use (re-planning after a verification found the hour's replicas overloaded). A period
    longer than `LONG_H` hours is solved in blocks (`solve_long`). `ties=False` leaves the
    tie-break solves for `break_ties` (a plan that fails its verification needs none).
    `solve_by` (`time.monotonic()`): the plan's solving budget ends there; past it a solve still
    gets `MIN_SOLVE_S` (it must give a plan), and work that only narrows a bound is left undone.
    `narrow=False` (a re-planning round): a long period's plan comes without the work that only
    narrows its gap, left in `solver_state` for `break_ties` once the plan meets its SLO."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: choose one of {OBJECTIVES}")
    levers = pillars.levers()
    caps = allowed_candidates(s, levers, derate)
    if not caps:
        raise PlanError("no candidate meets the SLO" + ("" if levers.any_candidate else f" (only {s.reference} allowed)"))
    period_h = len(s.intensity_g_per_kwh)
    deadline = s.deadline_h if levers.offline_within_deadline else 1
    decoupled = block is None and deadline <= 1
    if block is None and not decoupled and period_h > LONG_H:
        return solve_long(s, objective, pillars, econ, name, derate, time_limit_s, solve_by, narrow)
    if block is None:
        time_limit_s = within(time_limit_s, solve_by)
    caps = block.caps if block is not None else merge_near(undominated(caps, period_h, derate), period_h, derate)
    C = len(caps)
    types = sorted({c.candidate.hardware for c in caps})
    online, offline = _per_hour(s.online_per_hour, period_h), _per_hour(s.offline_per_hour, period_h)
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
        lower[L.n:L.n + C] = upper[L.n:L.n + C] = block.fixed_n
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
    if block is not None:  # a block: its raw solution and bound, for solve_long to assemble
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
    online = _per_hour(s.online_per_hour, period_h)
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
    plan = Plan(problem.name, problem.objective, problem.pillars, u, *_split(w, online), v[L.z:L.z + H][every],
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


def solve_long(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
               derate: dict[str, np.ndarray] | None, time_limit_s: float, solve_by: float = math.inf,
               narrow: bool = True) -> Plan:
    """A long carbon period first by the fleet search (`search_fleets`); where that stops over the
    bar, or for energy and cost, in blocks of about `BLOCK_H` hours (`block_edges`: as nearly one
    length as the period allows, or whole multiples of a period every input repeats with). With the
    search's plan to hand the blocks keep to `LONG_BUDGET_S` for the whole solve.

    Lower bound: each block alone, inheriting no backlog, its own replicas, and any work it leaves
    for later charged at the least it could cost then (the cheapest marginal energy of a request in
    the next deadline window); the global plan restricted to a block is one of its solutions, so
    the blocks' bounds add up to a bound on the whole. Plan: the blocks in order, replicas fixed at
    the fleet most blocks chose (and, where it differs, at the most any block chose: the better
    plan is kept), each inheriting the backlog the one before left and looking two
    deadlines past its end (its hours alone are kept). Gap: (plan - bound) / plan on the objective,
    the bound the better of the blocks' and `pooled.bound`'s, and where that leaves the gap over the
    bar, the blocks' again with the backlog at their edges priced (`priced_bound`); no
    tie-break solves (nothing idle is provisioned, as ever).

    Within the plan's budget (`solve_by`): the search keeps to what is left of it (at least
    `FLEET_MIN_S`, its floor then the LP's at `top`); past it each of the blocks' passes that find
    the plan keeps to `PAST_PASS_S` in all, and
    what only narrows the bound (the blocks after a search, the second fleet's pass, the pooled and
    priced bounds) is left undone, said in the plan's note and flagged."""
    levers = pillars.levers()
    H = len(s.intensity_g_per_kwh)
    caps = allowed_candidates(s, levers, derate)
    caps = merge_near(undominated(caps, H, derate), H, derate)
    started = time.perf_counter()  # the search's time counts in the plan's, where the blocks follow it
    searched = search_fleets(s, objective, pillars, econ, name, derate, time_limit_s, caps,
                             budget_s=within(FLEET_BUDGET_S, solve_by, FLEET_MIN_S))
    if searched is not None and searched[0].solver_gap <= MIP_GAP:
        return searched[0]
    search_s = time.perf_counter() - started
    if searched is not None and not narrow:  # the blocks after it only narrow: once the plan meets its SLO
        # A copy as solved: the verification replaces the plan's figures with simulated ones, and the
        # blocks compare and bound modelled figures.
        as_solved = (dataclasses.replace(searched[0], notes=list(searched[0].notes)), *searched[1:])
        searched[0].solver_state = Narrowing(lambda until: _after_search(s, objective, pillars, econ, name, derate,
                                                                         time_limit_s, caps, as_solved, search_s, until),
                                             solve_by)
        searched[0].notes[-1] += BLOCKS_NOT_TRIED
        return searched[0]
    if searched is not None:
        return _after_search(s, objective, pillars, econ, name, derate, time_limit_s, caps, searched, search_s, solve_by)
    return _blocks(s, objective, pillars, econ, name, derate, time_limit_s, caps, started, None, lambda: math.inf,
                   solve_by, narrow)


BLOCKS_NOT_TRIED = "; the blocks that would narrow that gap not tried (a re-planning round)"


def _after_search(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
                  derate: dict[str, np.ndarray] | None, time_limit_s: float, caps: list[Capacity], searched,
                  search_s: float, solve_by: float) -> Plan:
    """The blocks after a fleet search short of the bar: they only try to better its plan or its
    bound, within what is left of `LONG_BUDGET_S` after the search and of the plan's budget (the
    search's plan then stands, its gap as found, flagged)."""
    started = time.perf_counter()
    left_s = min(LONG_BUDGET_S - search_s, solve_by - time.monotonic())
    budget_end = started + left_s
    plan = searched[0]
    if left_s <= 0:  # nothing left to try them in: the search's plan stands, its gap as found
        plan.solver_hit_time_limit = True
        plan.notes[-1] += f"; the blocks that would narrow that gap not tried: {_which_budget(solve_by)} was spent"
        return plan

    def budget_left_s() -> float:
        if time.perf_counter() >= budget_end:
            raise _OutOfTime
        return budget_end - time.perf_counter()

    try:
        return _blocks(s, objective, pillars, econ, name, derate, time_limit_s, caps, started - search_s, searched,
                       budget_left_s, solve_by)
    except (_OutOfTime, PlanError) as stop:
        # The search's plan stands; a bound the blocks finished (their bound pass) still counts.
        plan, fleet_bound = searched[0], searched[1]
        bound = max(fleet_bound, getattr(stop, "bound", -math.inf))
        value = {"carbon": plan.total_kg, "energy": plan.energy_kwh, "cost": plan.cost_usd}[objective]
        if bound > fleet_bound and value > 0:
            plan.solver_gap = max(0.0, (value - bound) / value)
        # Stopped by a budget or a solve's limit; a block proven infeasible is no time limit.
        plan.solver_hit_time_limit = plan.solver_hit_time_limit or not isinstance(stop, Infeasible)
        plan.solve_s = time.perf_counter() - started + search_s
        why = (f"stopped at {_which_budget(solve_by)}" if isinstance(stop, _OutOfTime)
               else f"found no plan ({stop})")
        plan.notes[-1] += (f"; the blocks that followed, to narrow that gap, {why}"
                           + ("; gap against their bound pass" if bound > fleet_bound else ""))
        return plan


def block_edges(series: list[np.ndarray], H: int) -> list[int]:
    """Where a long period's blocks start and end. Where every per-hour input repeats with some
    period P of at most BLOCK_H hours (a replayed day-long trace under a flat objective), blocks are
    whole multiples of P near BLOCK_H long, the last taking what is left over, so the blocks inside
    are one problem, solved once. Otherwise blocks of as nearly one length as the period allows.
    Either way no block is short: it would choose its own fleet, and the plan provisions the most
    any block chose."""
    for P in range(1, min(BLOCK_H, H // 2) + 1):
        if all(np.array_equal(a[P:], a[:-P]) for a in series):
            length = P * max(1, round(BLOCK_H / P))
            count = max(1, H // length)
            return [k * length for k in range(count)] + [H]
    count = math.ceil(H / BLOCK_H)
    return [round(k * H / count) for k in range(count + 1)]


def _which_budget(solve_by: float) -> str:
    """The budget that stopped a long solve's work: the plan's, or the long solve's own."""
    if time.monotonic() >= solve_by:
        return "the plan's solving budget (plan.solve_budget_s)"
    return f"the long solve's budget ({LONG_BUDGET_S:.0f} s)"


class _OutOfTime(Exception):
    """The blocks of a long solve ran past its budget while the fleet search's plan was to hand;
    `bound`: the blocks' bound on the period where their bound pass had finished."""

    bound = -math.inf


def _blocks(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
            derate: dict[str, np.ndarray] | None, time_limit_s: float, caps: list[Capacity], started: float,
            searched, budget_left_s, solve_by: float = math.inf, narrow: bool = True) -> Plan:
    """`solve_long`'s blocks (its docstring says how); `budget_left_s()`: the time left of its budget
    (raises `_OutOfTime` once none is); `solve_by`: the plan's budget (`time.monotonic()`)."""
    levers = pillars.levers()
    H = len(s.intensity_g_per_kwh)
    online, offline = _per_hour(s.online_per_hour, H), _per_hour(s.offline_per_hour, H)
    deadline = s.deadline_h if levers.offline_within_deadline else 1
    waiting = waiting_bounds(offline, deadline)
    reuse = levers.offline_on_host_cpus and econ.host_cpu_capacity is not None and econ.host_cpu_capacity.feasible
    per_j = {"carbon": s.intensity_g_per_kwh * s.pue / J_PER_KWH / 1000.0, "energy": np.full(H, s.pue / J_PER_KWH),
             "cost": np.full(H, s.pue / J_PER_KWH * econ.electricity_usd_per_kwh)}[objective]
    cheapest_j = min([c.dynamic_j_per_request for c in caps] + ([econ.host_cpu_capacity.dynamic_j_per_request]
                                                                 if reuse else []))
    # (`waiting` follows from `offline`: it repeats too, past the first deadline.)
    edges = block_edges([online, offline, per_j] + list((derate or {}).values()), H)
    starts, ends = edges[:-1], edges[1:]

    def sub(h0: int, h1: int) -> Setting:
        return replace(s, intensity_g_per_kwh=s.intensity_g_per_kwh[h0:h1], online_per_hour=online[h0:h1],
                       offline_per_hour=offline[h0:h1])

    solved: dict[tuple, tuple] = {}

    class Pass:
        """A pass's time: within the plan's budget BLOCKS_BUDGET_S, at least BLOCK_MIN_S a block;
        from the block at which that budget is spent (at the start or part way), PAST_PASS_S for
        the rest, at least PAST_BLOCK_MIN_S a block, each block then given its share outright
        (past the budget `part` alone would give every block only its least)."""

        def __init__(self):
            self.past, self.started, self.time_s, self.least_s = False, time.perf_counter(), BLOCKS_BUDGET_S, BLOCK_MIN_S

        def share(self, blocks_left: int) -> tuple[float, float]:
            """(time limit, least) of the next block, `blocks_left` of the pass to solve with it."""
            if not self.past and time.monotonic() >= solve_by:
                self.past, self.started = True, time.perf_counter()
                self.time_s, self.least_s = PAST_PASS_S, PAST_BLOCK_MIN_S
            left_s = self.time_s - (time.perf_counter() - self.started)
            limit_s = min(time_limit_s, max(self.least_s, left_s / max(1, blocks_left)))
            return limit_s, limit_s if self.past else self.least_s

    def key_of(h0: int, h1: int, **kw) -> tuple:
        """What a block's solve depends on: blocks that are the same problem (a replayed trace
        under a flat objective: energy, cost) are solved once."""
        return (online[h0:h1].tobytes(), offline[h0:h1].tobytes(), per_j[h0:h1].tobytes(), waiting[h0:h1].tobytes(),
                tuple(sorted((k, v[h0:h1].tobytes()) for k, v in derate.items())) if derate else (),
                tuple((k, v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in sorted(kw.items())))

    def part(h0: int, h1: int, limit_s: float = time_limit_s, least_s: float = BLOCK_MIN_S, **kw) -> tuple:
        """Block h0..h1 solved (once per distinct problem), within the budgets; past the plan's
        budget it still gets `least_s` (a block the plan needs must be solved). A block that hit
        its limit is reused as it is, even by a call that would give it longer: in a repeating run
        each block's share of the budget grows as the reused ones cost nothing, and re-solving at
        every growth would spend on one block what the memo saves on fifty. Its `hit_limit` goes
        with it, so the plan's time-limit flag and gap say so."""
        d = {k: v[h0:h1] for k, v in derate.items()} if derate else None
        key = key_of(h0, h1, **kw)
        if key not in solved:
            limit_s = within(min(limit_s, budget_left_s()), solve_by, min(least_s, limit_s))
            solved[key] = solve(sub(h0, h1), objective, pillars, econ, name, d, limit_s, Block(caps, waiting[h0:h1], **kw))
        return solved[key]

    bound, hit, chosen = 0.0, False, []
    def defer_after(h1: int, j_per_request: float = cheapest_j) -> float:
        """The price of a request left at hour h1 for later: `j_per_request` at the lowest weight of
        the next deadline window (by default the cheapest marginal energy: the least it can cost then)."""
        later = per_j[h1:h1 + max(deadline, 1)]
        return j_per_request * float(later.min()) if len(later) else 0.0

    # The blocks' bound pass keeps to BLOCKS_BUDGET_S: each block gets its share of what is left (at
    # least BLOCK_MIN_S). A block stopped at its limit still gives a dual bound (a weaker one) and a
    # fleet; one stopped without a plan gives neither (no bound for the period, said by its gap).
    # The budget is shared among the blocks still to solve that are distinct problems.
    bound_pass = Pass()
    keys = [key_of(h0, h1, end_free=h1 < H, defer_cost=defer_after(h1)) for h0, h1 in zip(starts, ends)]
    for k, (h0, h1) in enumerate(zip(starts, ends)):
        limit_s, floor_s = bound_pass.share(len(set(keys[k:]) - solved.keys()))
        try:
            res, L, _ = part(h0, h1, limit_s=limit_s, least_s=floor_s, end_free=h1 < H, defer_cost=defer_after(h1))
        except Infeasible:
            raise
        except PlanError:
            bound, hit = -math.inf, True
            continue
        bound += res.bound if np.isfinite(res.bound) else -math.inf  # no bound known: none for the period
        hit = hit or res.hit_limit
        chosen.append(tuple(np.round(res.x[L.n:L.n + L.C])))
    if not chosen:
        raise PlanError(f"plan {name}: no block of the period found a plan within its time limit")
    ahead = 2 * max(deadline, 1)  # each block sees this far past its end, so it does not leave work at a bad time
    # The blocks between the first and the last are one problem (`block_edges` found a period).
    repeating = len(starts) > 3 and len(set(keys[1:-1])) == 1

    def in_order(fixed: np.ndarray) -> tuple[Plan, bool]:
        u, x, y, z = [], [], [], []
        backlog, limit = 0.0, False
        plan_pass = Pass()  # each plan pass keeps to its time, as the bound pass
        for k, (h0, h1) in enumerate(zip(starts, ends)):
            end = min(H, h1 + ahead)
            # What the look-ahead leaves is charged as in the bound: free, it would pull work past the
            # block's own hours into the hours after it, whatever their intensity.
            kw = dict(backlog_in=backlog, end_free=end < H, defer_cost=defer_after(end))
            share_s, floor_s = plan_pass.share(len(starts) - k)
            res = None
            if repeating and 0 < k < len(starts) - 1:
                # Inside a repeating run the block ends with the backlog it began with, so the next
                # is the same problem, solved once (left free, a flat objective's backlog at the edge
                # is whatever the solver stopped at, and each block was a solve of its own: 52 of
                # about a second each on a year). Where it cannot repeat, solved as any block.
                try:
                    res, L, _ = part(h0, end, limit_s=share_s, least_s=floor_s, fixed_n=fixed, hold_at=h1 - h0 - 1, **kw)
                except PlanError:  # (proven infeasible too)
                    res = None
            try:
                try:
                    if res is None:
                        res, L, _ = part(h0, end, limit_s=share_s, least_s=floor_s, fixed_n=fixed, **kw)
                except Infeasible:
                    raise
                except PlanError:  # no plan in the block's share of the budget: the fleet again, the full limit (within the long solve's budget)
                    res, L, _ = part(h0, end, least_s=MIN_SOLVE_S * 3, fixed_n=fixed, **kw)
            except PlanError:  # the inherited backlog needs more replicas here: chosen, at least those fixed
                res, L, _ = part(h0, end, least_s=MIN_SOLVE_S * 3, **kw)
                fixed = np.maximum(fixed, np.round(res.x[L.n:L.n + L.C]))
            limit = limit or res.hit_limit
            v, own = res.x, h1 - h0  # only the block's own hours are kept
            u.append(np.round(v[L.u:L.u + L.H * L.C].reshape(L.H, L.C))[:own])
            xs, ys = _split(_served(L, v), online[h0:end])
            x.append(xs[:own])
            y.append(ys[:own])
            z.append(v[L.z:L.z + L.H][:own])
            # Snapped to whole requests where the solver left it within rounding of one (never
            # moved further: that would add or drop work), so a steady backlog at a repeating edge
            # repeats exactly and the blocks after it are the same problem, solved once.
            left = max(0.0, float(v[L.b + own - 1]))  # (a solver's -1e-9 is none)
            backlog = float(round(left)) if abs(left - round(left)) < 1e-6 else left
        return _assemble(name, objective, pillars, s, econ, caps, np.vstack(u), np.vstack(x), np.vstack(y),
                         np.concatenate(z)), limit

    # The fleet: the one most blocks chose, and the most any block chose where that differs (one
    # odd block, such as the last, which must clear its backlog, must not set the year's fleet
    # unseen); the better plan on the objective is kept.
    common = max(set(chosen), key=lambda n: (chosen.count(n), n))
    fleets = [np.array(common)] + ([np.max(chosen, axis=0)] if np.any(np.max(chosen, axis=0) != common) else [])
    # A fleet that cannot serve the period's work on average (each block alone chose it, leaving a
    # little for the next) only grows block by block in the plan pass: where another fleet is on
    # offer it is not tried (on a year, that pass was a fifth of the whole plan's time).
    whole = [f for f in fleets if serves_period(f, caps, online + offline, derate, econ.host_cpu_capacity if reuse else None)]
    fleets = whole or fleets
    metric = {"carbon": "total_kg", "energy": "energy_kwh", "cost": "cost_usd"}[objective]
    tried = []
    cut = ""  # what the long solve's budget left undone
    for f in fleets:
        if tried and time.monotonic() >= solve_by:
            cut = "the plan pass with the most any block chose"
            break
        try:
            tried.append(in_order(f))
        except _OutOfTime as stop:  # the search's plan stands, unless a pass already gave one
            if not tried:
                stop.bound = bound if np.isfinite(bound) else -math.inf
                raise
            cut = "the plan pass with the most any block chose"
            break
    plan, limit = min(tried, key=lambda t: getattr(t[0], metric))
    # Every bound on the period's optimum at hand (value, whether a solve behind it hit its limit,
    # its name); the tightest is reported.
    bounds = [(bound, hit, "the blocks' bound")]
    fleet_note = ""
    if searched is not None:  # the fleet search stopped short of the bar: the better plan, the tighter bound
        fleet_plan, fleet_bound, fleet_hit, fleet_note = searched
        if getattr(fleet_plan, metric) < getattr(plan, metric):
            plan, limit = fleet_plan, fleet_hit
        bounds.append((fleet_bound, fleet_hit, "the fleet search's bound"))
        fleet_note = f"; fleet search: {fleet_note}"
    value = {"carbon": plan.total_kg, "energy": plan.energy_kwh, "cost": plan.cost_usd}[objective]
    blocks_bound = bound

    def out_of_budget() -> bool:
        try:
            budget_left_s()
        except _OutOfTime:
            return True
        return time.monotonic() >= solve_by

    def finish(narrowed: bool, cut: str) -> Plan:
        """The plan's gap against the tightest bound, and its note; `narrowed`: with the pooled and
        priced bounds (for a plan that met its SLO: a round re-planned needs neither). `value` is
        the plan's modelled figure, taken before any verification replaced it."""
        found = list(bounds)
        if narrowed:
            try:
                budget_left_s()
                if time.monotonic() >= solve_by:
                    raise _OutOfTime
                pooled, pooled_hit = pooled_bound(s, objective, levers, econ, caps, derate, per_j)
            except _OutOfTime:
                pooled, pooled_hit = -math.inf, True
                cut = cut + (", " if cut else "") + "the pooled bound"
            found.append((pooled, pooled_hit, "the pooled bound (offline work in any hour, one fleet; tighter here than "
                          "the blocks')" + ("; the pooled bound's solve stopped at its time limit (a weaker bound)"
                                            if pooled_hit else "")))
        found = [b for b in found if np.isfinite(b[0])] or [(-math.inf, True, "no bound (a solve stopped without one)")]
        best = max(found, key=lambda b: b[0])
        over = value > 0 and (value - best[0]) / value > LAGRANGE_TARGET
        priced_s = min(LAGRANGE_BUDGET_S, solve_by - time.monotonic())
        if narrowed and over and priced_s <= 0:
            cut = cut + (", " if cut else "") + "the priced bound"
        elif narrowed and over:  # the blocks again, the backlog at their edges priced
            priced = priced_bound(value, blocks_bound, hit, starts, ends, H, waiting, cheapest_j, caps, defer_after,
                                  part, priced_s)
            if priced[2]:
                found.append((priced[0], priced[1], f"the blocks' bound{priced[2]}"))
                best = max(found, key=lambda b: b[0])
        bound_, bound_hit, label = best
        plan.solver_gap = max(0.0, (value - bound_) / value) if value > 0 else 0.0
        if narrowed and "priced" not in cut and plan.solver_gap > LAGRANGE_TARGET and out_of_budget():
            cut = cut + (", " if cut else "") + "possibly the priced bound"  # it may have been cut short too
        plan.solver_hit_time_limit = limit or bound_hit or bool(cut)  # the kept plan's solves, and the bound's
        plan.solve_s = time.perf_counter() - started
        plan.notes.append(f"MILP over {len(caps)} undominated of {len(s.capacities)} candidates (near-copies within "
                          f"{NEAR:.0%} merged), in {len(starts)} blocks "
                          f"of {min(e - b for b, e in zip(starts, ends))}-{max(e - b for b, e in zip(starts, ends))} h; "
                          "gap against " + label + fleet_note
                          + ("" if narrowed else "; the pooled and priced bounds not tried (a re-planning round)")
                          + (f"; {_which_budget(solve_by)} cut short: {cut}" if cut else ""))
        return plan

    if narrow:
        return finish(True, cut)
    plan = finish(False, cut)

    def narrow_later(until: float) -> Plan:
        nonlocal solve_by  # the budget left when it runs (`part` and `finish` read it)
        solve_by = until
        plan.notes.pop()
        return finish(True, cut)
    plan.solver_state = Narrowing(narrow_later, solve_by)
    return plan


class Narrowing:
    """What a long solve left undone to narrow its plan's bound (`solve(narrow=False)`: a round that
    may be re-planned); `break_ties` does it once the plan has met its SLO. Called, it returns the
    plan with its gap against the tighter bound (the same plan, or a better one the work found),
    within `solve_by` (what is left of the plan's budget then; by default the solve's own)."""

    def __init__(self, work, solve_by: float) -> None:
        self.work, self.solve_by = work, solve_by

    def __call__(self, solve_by: float | None = None) -> Plan:
        return self.work(self.solve_by if solve_by is None else solve_by)


LONG_BUDGET_S = 90.0  # a long solve's whole time when the fleet search found a plan over the bar (the blocks try to better it)
BLOCKS_BUDGET_S = 40.0  # the blocks' bound pass of a long period, and each plan pass (or 2 s a block, if more)
BLOCK_MIN_S = 2.0  # the least time a block of it gets
# Past the plan's solving budget a pass still solves every block it needs, but in this much time all
# told (at least PAST_BLOCK_MIN_S a block): at BLOCK_MIN_S a block, a carbon year's 53 week blocks
# took 110-118 s a round past a 45 s budget (the default then; a week-long trace replayed over a year, 366 s in all).
PAST_PASS_S = 10.0
PAST_BLOCK_MIN_S = 0.2
LAGRANGE_TARGET = MIP_GAP  # a gap over the bar is narrowed by pricing the backlog at the blocks' edges
LAGRANGE_EVALS = 6  # prices tried (each solves every distinct block)
LAGRANGE_BUDGET_S = 30.0


def priced_bound(value: float, bound: float, hit: bool, starts: list[int], ends: list[int], H: int,
                      waiting: np.ndarray, cheapest_j: float, caps: list[Capacity], price_after, part,
                      budget_s: float = LAGRANGE_BUDGET_S) -> tuple[float, bool, str]:
    """A tighter bound on a period solved in blocks: the backlog passed from block to block is
    priced (Lagrangian relaxation of the backlog carried across each edge). For any price, every
    block alone, paying it for the work it leaves and earning it for the work it inherits (at most
    what may be waiting there), has an optimum whose sum is a lower bound on the period's, since
    the period's plan restricted to each block is one of its solutions and the prices cancel
    across each edge. At the cheapest marginal energy (the first bound) no block inherits, and
    the bound undercounts what deferred work really costs (an active replica's idle power too);
    the best price lies between that and the least a request costs on a replica at full load.
    The bound is concave in the price, so a golden-section search over it finds the best, stopped
    once the gap is under `LAGRANGE_TARGET`, after `LAGRANGE_EVALS` prices or `budget_s`.
    Returns (bound, whether a solve behind it hit its limit, a note)."""
    started = time.perf_counter()
    full_j = min((c.active_w * 3600.0 / c.requests_per_hour + c.dynamic_j_per_request for c in caps
                  if c.requests_per_hour > 0), default=cheapest_j)
    lo, hi = cheapest_j, max(full_j, cheapest_j)
    best = (bound, hit, cheapest_j)
    seen: dict[float, float] = {}

    def at(mu: float) -> float:
        if mu in seen:
            return seen[mu]
        nonlocal best
        total, limit = 0.0, False
        for h0, h1 in zip(starts, ends):
            kw = dict(end_free=h1 < H, defer_cost=price_after(h1, mu))
            if h0 > 0:
                kw.update(inherit_price=price_after(h0, mu), inherit_max=float(waiting[h0 - 1]))
            # Within the budget: a block stopped at its limit still gives a (weaker) dual bound.
            left_s = budget_s - (time.perf_counter() - started)
            if left_s <= 0:
                total = -math.inf  # a partial sum is no bound
                break
            try:
                res, _, _ = part(h0, h1, limit_s=left_s, **kw)
            except (PlanError, _OutOfTime):  # stopped without a plan: no bound at this price (the plan stands)
                total = -math.inf
                break
            total += res.bound  # a block's dual bound (NaN: none, and then no bound at this price)
            limit = limit or res.hit_limit
        total = total if np.isfinite(total) else -math.inf
        seen[mu] = total
        if total > best[0]:
            best = (total, limit, mu)
        return total

    def done() -> bool:
        return ((value - best[0]) / value <= LAGRANGE_TARGET or len(seen) >= LAGRANGE_EVALS
                or time.perf_counter() - started > budget_s)

    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc = at(c)
    fd = at(d) if not done() else -math.inf
    while not done() and b - a > 1e-6 * max(1.0, b):
        if fc >= fd:  # the best lies left of d
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = at(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = at(d)
    bound_, hit_, mu = best
    if not bound_ > bound:  # no price did better than the first bound
        return bound, hit, ""
    return bound_, hit_, (f" with the backlog at block edges priced at {mu:.3g} J per request at the next deadline "
                          f"window's lowest weight (Lagrangian; {len(seen)} price(s) tried)")


FLEET_SEARCH = True  # long carbon plans: the fleet search first (`search_fleets`), the blocks where it falls short
FLEET_EVALS = 40  # whole-period solves one fleet search may make
FLEET_POPS = 200_000  # fleets it may enumerate
FLEET_GAP = 0.002  # each fixed-fleet solve's stopping gap
FLEET_TARGET = MIP_GAP / 2  # fleets whose bound is within this share of the best plan are not solved
FLEET_BUDGET_S = 40.0  # the whole search's time, after which the fleets left keep the floor's bound
FLEET_MIN_S = 5.0  # the least it gets where its plan's budget is spent (it must find a plan)
FLEET_LIMIT_S = 10.0  # each fixed-fleet solve's time limit (its dual bound then still bounds the fleet)


def search_fleets(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
                  derate: dict[str, np.ndarray] | None, time_limit_s: float,
                  caps: list[Capacity], budget_s: float = FLEET_BUDGET_S) -> tuple[Plan, float, bool, str] | None:
    """A long period solved whole for each of a few fleets, with a bound over every fleet.

    With its fleet (replicas per candidate) fixed, a whole year is one MILP that closes in about a
    second (the hard part of the full problem is choosing the fleet). Write F(n) for the optimum
    with fleet n, E(n) for its fleet terms (embodied carbon or price of its GPUs and nodes) and
    O(n) = F(n) - E(n). More replicas never cost more to run (parked ones draw nothing), and past
    `top` (per candidate, enough to serve alone, on its GPUs and on its share of host CPUs, the
    most work any hour can hold) none is ever needed, so O(n) >= O(top) for every fleet: the
    solver's dual bound at `top`, less E(top), is a floor on every fleet's running cost, and
    E(n) + floor bounds F(n) (raised to E(n) + O's bound of any solved fleet that holds n). Fleets
    are taken in order of E (a heap over the lattice) and solved while that bound is under the
    best plan found; every fleet not solved keeps its bound, so the least bound over all fleets is
    a bound on the period's optimum. A fleet without the capacity for the period's work on average
    (`serves_period`) has no plan and is skipped. Returns (plan, bound, whether a solve hit its
    limit, a note), or None where the largest fleet gave no floor."""
    import heapq

    if objective != "carbon" or not FLEET_SEARCH:
        # Energy and cost are nearly flat over the hours (energy has no fleet terms to order the
        # fleets by), and a flat objective over a whole year is what HiGHS solves worst: on the
        # year's case 10 s for a 46% gap (energy) and 17% (cost) per fleet. Their week blocks are
        # alike and solved once, and their bounds hold: the blocks do better there.
        return None
    levers = pillars.levers()
    H = len(s.intensity_g_per_kwh)
    C = len(caps)
    online, offline = _per_hour(s.online_per_hour, H), _per_hour(s.offline_per_hour, H)
    deadline = s.deadline_h if levers.offline_within_deadline else 1
    waiting = waiting_bounds(offline, deadline)
    reuse = levers.offline_on_host_cpus and econ.host_cpu_capacity is not None and econ.host_cpu_capacity.feasible
    host = econ.host_cpu_capacity if reuse else None
    types = sorted({c.candidate.hardware for c in caps})
    gpus_tab = embodied.gpus()
    tp = np.array([c.candidate.device.devices for c in caps], float)
    type_of = np.array([types.index(c.candidate.hardware) for c in caps])
    per_node = np.array([float(gpus_tab.loc[t, "gpus_per_node"]) for t in types])
    fleet_cost, node_cost = _fleet_costs(s, objective, levers, caps, types)

    def fleet_terms(n: np.ndarray) -> float:
        gpus = np.bincount(type_of, weights=n * tp, minlength=len(types))
        return float(fleet_cost @ n + node_cost @ np.ceil(gpus / per_node - 1e-9))

    rate = np.array([c.requests_per_hour for c in caps])[None, :] * np.ones((H, C))
    for j, c in enumerate(caps):
        if derate and c.candidate.name in derate:
            rate[:, j] = rate[:, j] * derate[c.candidate.name]
    most = float(np.max(online + offline + np.concatenate([[0.0], waiting[:-1]])))  # work one hour can hold
    slowest = rate.min(axis=0)
    if not (slowest > 0).all() or most <= 0:
        return None
    top = np.ceil(most / slowest - 1e-9)
    if host is not None:  # a node's share of host CPUs per active GPU serves work too: enough of them as well
        top = np.maximum(top, np.ceil(most / (host.requests_per_hour * tp / per_node[type_of]) - 1e-9))
    capacity = period_capacity(caps, rate, host)  # requests per replica over the period
    work = float((online + offline).sum())

    def solve_fleet(n: np.ndarray, relax: bool = False):
        # Within what is left of the search's budget (a fleet's solve stopped at its limit still
        # bounds that fleet), so the search ends near it, not a whole fleet's limit past it.
        limit_s = min(time_limit_s, FLEET_LIMIT_S, max(BLOCK_MIN_S, budget_s - (time.perf_counter() - started)))
        try:
            return solve(s, objective, pillars, econ, name, derate, limit_s,
                         Block(caps, waiting, fixed_n=n, rel_gap=FLEET_GAP, relax=relax))
        except Infeasible:
            return "infeasible"
        except PlanError:  # stopped at its limit without a plan
            return None

    started = time.perf_counter()
    # `top` counts host CPUs too, so no larger fleet gains cores: its solve bounds every fleet. With
    # no more than its least time (its plan's budget spent), its LP relaxation: the MILP there, the
    # hardest of the search, overran a 5 s limit to 14 s (HiGHS checks its clock between phases),
    # and each round of a re-planned year paid it; the LP took 3 s, and its bound holds as well.
    top_relaxed = budget_s <= FLEET_MIN_S
    at_top = solve_fleet(top, relax=top_relaxed)
    if not isinstance(at_top, tuple) or not np.isfinite(at_top[0].bound):
        return None
    hit = at_top[0].hit_limit  # its dual bound at a stop is still a floor, a weaker one (its LP's was too weak)
    floor = at_top[0].bound - fleet_terms(top)
    solved: list[tuple[np.ndarray, float]] = [(top, floor)]  # fleet, bound on its running cost
    # Floors per support (the candidates a fleet has any of, as a bit mask): every fleet within a
    # support S is at most `top` on S, so its running cost is at least the LP relaxation's at `top`
    # on S (less that fleet's terms). One LP bounds every fleet of those candidates at once: the
    # year's floor at `top` is the running cost with every candidate to hand, far below what a fleet
    # of H100s alone or L4s alone can reach (on a diurnal year, 40 s of fleet LPs and MILPs left a
    # 9.6% gap where these floors pruned all but a few). Infinite: no fleet within S serves the period.
    full = (1 << C) - 1
    floors: dict[int, float] = {full: floor}

    def mask_of(n: np.ndarray) -> int:
        return sum(1 << j for j in range(C) if n[j] > 0)

    def support_floor(mask: int) -> float:
        """The best floor known for fleets within `mask`: the largest over the supports holding it."""
        return max(f for m, f in floors.items() if m & mask == mask)

    def learn_floor(mask: int) -> None:
        nonlocal hit
        cap_n = np.where([(mask >> j) & 1 for j in range(C)], top, 0.0)
        if float(cap_n @ capacity) < work * (1 - 1e-9):
            floors[mask] = math.inf  # not even all of them serve the period's work
            return
        lp = solve_fleet(cap_n, relax=True)
        if lp == "infeasible":
            floors[mask] = math.inf
        elif lp is not None and not lp[0].hit_limit:
            floors[mask] = max(floor, lp[0].fun - fleet_terms(cap_n))
        else:  # no LP optimum in its time: the support keeps the floors that hold it
            hit = True
            floors[mask] = support_floor(mask)
    best = (math.inf, None)  # the best plan found (the relaxed `top` is none)
    lowest = math.inf  # the least bound over the fleets taken so far
    def left_bound(heap: list) -> float:
        """A bound on every fleet not yet taken. Each is a heap fleet n or holds one (successors are
        pushed before a fleet is judged); one that holds n with support S holds n plus one of each
        candidate of S it lacks, so its fleet terms are at least n's plus those replicas' own (node
        terms only grow), and its running cost at least S's floor. Per support m of the heap's
        fleets, the least over the supports S holding it of those replicas' terms plus S's floor."""
        least: dict[int, float] = {}
        for terms_, key_ in heap:
            m = mask_of(np.array(key_, float))
            least[m] = min(least.get(m, math.inf), terms_)
        add = {m: min(float(sum(fleet_cost[j] for j in range(C) if (s_ >> j) & 1 and not (m >> j) & 1))
                      + support_floor(s_) for s_ in range(full + 1) if s_ & m == m) for m in least}
        return min((t + add[m] for m, t in least.items()), default=math.inf)

    zero = tuple([0] * C)
    heap = [(fleet_terms(np.zeros(C)), zero)]
    seen = {zero}
    pops = evals = 0
    complete = False
    while True:
        if not heap:
            complete = True
            break
        terms, key = heap[0]
        cut = best[0] * (1 - FLEET_TARGET)  # inf until a plan is found
        if terms + floor >= cut:  # every fleet left costs at least nearly as much as the best plan
            lowest = min(lowest, terms + floor)
            complete = True
            break
        if pops >= FLEET_POPS or evals >= FLEET_EVALS or time.perf_counter() - started > budget_s:
            lowest = min(lowest, left_bound(heap))
            break
        heapq.heappop(heap)
        pops += 1
        n = np.array(key, float)
        for j in range(C):
            if n[j] < top[j]:
                nxt = key[:j] + (key[j] + 1,) + key[j + 1:]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (fleet_terms(np.array(nxt, float)), nxt))
        if float(n @ capacity) < work * (1 - 1e-9):
            continue  # cannot serve the period's work: no plan
        running = max(b for m, b in solved if (m >= n).all())  # `top` holds every fleet taken
        if terms + running >= cut:
            lowest = min(lowest, terms + running)
            continue
        mask = mask_of(n)
        if mask not in floors:
            learn_floor(mask)
        running = max(running, support_floor(mask))
        if terms + running >= cut:
            lowest = min(lowest, terms + running)
            continue
        lp = solve_fleet(n, relax=True)  # its LP relaxation first (a second or less): a bound that often prunes it
        if lp == "infeasible":
            continue
        if lp is None or lp[0].hit_limit:  # the LP stopped at its limit: the fleet is bounded by what holds it
            lowest = min(lowest, terms + running)
            hit = True
            continue
        if lp[0].fun >= cut:
            lowest = min(lowest, lp[0].fun)
            continue
        res = solve_fleet(n)
        evals += 1
        if res == "infeasible":
            continue
        if res is None:  # stopped without a plan: bounded as if not solved
            lowest = min(lowest, terms + running)
            hit = True
            continue
        hit = hit or res[0].hit_limit
        bound = res[0].bound if np.isfinite(res[0].bound) else terms + running  # no dual bound: what holds it
        solved.append((n, bound - terms))
        lowest = min(lowest, bound)
        if res[0].fun < best[0]:
            best = (res[0].fun, res)
    if best[1] is None:  # no fleet solved to a plan within the limits
        return None
    res, L, _ = best[1]
    v = res.x
    u = np.round(v[L.u:L.u + L.H * L.C].reshape(L.H, L.C))
    x, y = _split(_served(L, v), online)
    plan = _assemble(name, objective, pillars, s, econ, caps, u, x, y, v[L.z:L.z + L.H])
    value = {"carbon": plan.total_kg, "energy": plan.energy_kwh, "cost": plan.cost_usd}[objective]
    plan.solver_gap = max(0.0, (value - lowest) / value) if value > 0 else 0.0
    plan.solver_hit_time_limit = hit
    plan.solve_s = time.perf_counter() - started
    note = (f"the period solved whole for {evals} fleet(s), fleets taken in order of their "
            + "embodied carbon; gap against the least bound over every fleet (where a fleet was not solved: its "
            "terms plus the running-cost floor of the candidates it may hold, the LP at the largest useful fleet of them)"
            + ("; the floor of every fleet the LP at the largest (no more than the search's least time left of its "
               "plan's solving budget: a weaker bound)"
               if top_relaxed else "")
            + ("" if complete else f"; the search stopped at its limit ({FLEET_EVALS} solves, {budget_s:.0f} s)"))
    plan.notes.append(f"MILP over {len(caps)} undominated of {len(s.capacities)} candidates (near-copies within "
                      f"{NEAR:.0%} merged); {note}")
    return plan, lowest, hit, note


def period_capacity(caps: list[Capacity], rate: np.ndarray, host: Capacity | None) -> np.ndarray:
    """Requests one replica of each candidate can serve over the period [C]: its GPUs' `rate`
    [H, C] summed, and, where Reuse runs, its share of a node's host CPUs (a share of a node per
    GPU, as the MILP's rows count it)."""
    total = rate.sum(axis=0)
    if host is not None:
        gpus_tab = embodied.gpus()
        share = np.array([c.candidate.device.devices / float(gpus_tab.loc[c.candidate.hardware, "gpus_per_node"])
                          for c in caps])
        total = total + share * host.requests_per_hour * rate.shape[0]
    return total


def serves_period(fleet: np.ndarray, caps: list[Capacity], demand: np.ndarray, derate: dict[str, np.ndarray] | None,
                  host: Capacity | None) -> bool:
    """Whether `fleet` (replicas per candidate) has the capacity, over the whole period, for the
    period's requests `demand` [H] (its GPUs, and its nodes' host CPUs where Reuse runs)."""
    H = len(demand)
    rate = np.array([c.requests_per_hour * (derate.get(c.candidate.name, np.ones(H)) if derate else np.ones(H))
                     for c in caps]).T
    return float(np.asarray(fleet, float) @ period_capacity(caps, rate, host)) >= float(np.sum(demand)) * (1 - 1e-9)


def _served(L: _Layout, v: np.ndarray) -> np.ndarray:
    return np.maximum(v[L.w:L.w + L.H * L.C].reshape(L.H, L.C), 0.0)


def pooled_bound(s: Setting, objective: str, levers, econ: Economics, caps: list[Capacity],
                  derate: dict[str, np.ndarray] | None, per_j: np.ndarray) -> tuple[float, bool]:
    """`pooled.bound` of the period (the whole period, offline deadlines dropped): (bound, hit its limit)."""
    from bench.carbon.planning import parallel
    from bench.carbon.planning import pooled as pooled_relaxation

    H, C = len(per_j), len(caps)
    types = sorted({c.candidate.hardware for c in caps})
    gpus_tab = embodied.gpus()
    tp = np.array([c.candidate.device.devices for c in caps], float)
    type_of = np.array([types.index(c.candidate.hardware) for c in caps])
    per_node = np.array([float(gpus_tab.loc[t, "gpus_per_node"]) for t in types])
    scale = np.ones((H, C))
    for j, c in enumerate(caps):
        if derate and c.candidate.name in derate:
            scale[:, j] = derate[c.candidate.name]
    fleet, nodes = _fleet_costs(s, objective, levers, caps, types)
    reuse = levers.offline_on_host_cpus and econ.host_cpu_capacity is not None and econ.host_cpu_capacity.feasible
    parallel.threads_started = True  # HiGHS runs here: no fork after this (parallel.py)
    return pooled_relaxation.bound(caps, _per_hour(s.online_per_hour, H), _per_hour(s.offline_per_hour, H), scale, per_j,
                                   fleet, nodes, type_of, per_node, tp, econ.host_cpu_capacity if reuse else None)


def _fleet_costs(s: Setting, objective: str, levers, caps: list[Capacity], types: list[str]) -> tuple[np.ndarray, np.ndarray]:
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


def _split(w: np.ndarray, online: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(online, offline) requests per hour and candidate, from `w` served [H, C]: each candidate's
    served requests split in its hour's proportion of online work (any split serves the same;
    this one is stated)."""
    total = w.sum(axis=1, keepdims=True)
    share = np.divide(online[:, None], total, out=np.zeros_like(total), where=total > 0)
    x = w * np.minimum(share, 1.0)
    return x, w - x


def _assemble(name, objective, pillars, s, econ, caps, u, x, y, z) -> Plan:
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
    return _Solved(res.x, res.fun, res.gap, res.status == "limit", res.bound)  # no bound known: the gap is NaN


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
