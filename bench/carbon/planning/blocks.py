"""A long period solved by the fleet search and in blocks, with a bound on its optimum (`solve_long`).

A period whose offline work may wait, longer than `solver.LONG_H` hours, is too large for one MILP
within the time bars. A carbon plan is searched over fleets first (`fleets.search_fleets`); where
that stops over the gap's bar, or for energy and cost, the period is cut into blocks of about
`BLOCK_H` hours, each one `milp.solve_hours` over its hours: a bound pass (each block alone) whose
bounds add up to a bound on the period, a plan pass (the blocks in order with one fleet), and, where
the gap is still over the bar, the pooled bound (`pooled.py`) and the backlog at the blocks' edges
priced (`priced_bound`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import replace

import numpy as np

from bench.carbon.inputs import embodied
from bench.carbon.planning import fleets, milp
from bench.carbon.planning.errors import PlanError
from bench.carbon.planning.milp import (MIN_SOLVE_S, NEAR, Block, Infeasible, Narrowing, allowed_candidates,
                                        assemble, fleet_costs, merge_near, per_hour, served, split_served,
                                        undominated, waiting_bounds, within)
from bench.carbon.planning.pillars import Pillars
from bench.carbon.planning.setting import J_PER_KWH, Economics, Plan, Setting
from bench.carbon.serving.capacity import Capacity

BLOCK_H = 168


def solve_long(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
               derate: dict[str, np.ndarray] | None, time_limit_s: float, solve_by: float = math.inf,
               narrow: bool = True) -> Plan:
    """A long carbon period first by the fleet search (`fleets.search_fleets`); where that stops over the
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
    `fleets.FLEET_MIN_S`); past it each of the blocks' passes that find
    the plan keeps to `PAST_PASS_S` in all, and
    what only narrows the bound (the blocks after a search, the second fleet's pass, the pooled and
    priced bounds) is left undone, said in the plan's note and flagged."""
    levers = pillars.levers()
    H = len(s.intensity_g_per_kwh)
    caps = allowed_candidates(s, levers, derate)
    caps = merge_near(undominated(caps, H, derate), H, derate)
    started = time.perf_counter()  # the search's time counts in the plan's, where the blocks follow it
    searched = fleets.search_fleets(s, objective, pillars, econ, name, derate, time_limit_s, caps,
                                    budget_s=within(fleets.FLEET_BUDGET_S, solve_by, fleets.FLEET_MIN_S))
    if searched is not None and searched[0].solver_gap <= milp.MIP_GAP:
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
    online, offline = per_hour(s.online_per_hour, H), per_hour(s.offline_per_hour, H)
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
            solved[key] = milp.solve_hours(sub(h0, h1), objective, pillars, econ, name, d, limit_s, Block(caps, waiting[h0:h1], **kw))
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
            xs, ys = split_served(served(L, v), online[h0:end])
            x.append(xs[:own])
            y.append(ys[:own])
            z.append(v[L.z:L.z + L.H][:own])
            # Snapped to whole requests where the solver left it within rounding of one (never
            # moved further: that would add or drop work), so a steady backlog at a repeating edge
            # repeats exactly and the blocks after it are the same problem, solved once.
            left = max(0.0, float(v[L.b + own - 1]))  # (a solver's -1e-9 is none)
            backlog = float(round(left)) if abs(left - round(left)) < 1e-6 else left
        return assemble(name, objective, pillars, s, econ, caps, np.vstack(u), np.vstack(x), np.vstack(y),
                         np.concatenate(z)), limit

    # The fleet: the one most blocks chose, and the most any block chose where that differs (one
    # odd block, such as the last, which must clear its backlog, must not set the year's fleet
    # unseen); the better plan on the objective is kept.
    common = max(set(chosen), key=lambda n: (chosen.count(n), n))
    offered = [np.array(common)] + ([np.max(chosen, axis=0)] if np.any(np.max(chosen, axis=0) != common) else [])
    # A fleet that cannot serve the period's work on average (each block alone chose it, leaving a
    # little for the next) only grows block by block in the plan pass: where another fleet is on
    # offer it is not tried (on a year, that pass was a fifth of the whole plan's time).
    whole = [f for f in offered
             if fleets.serves_period(f, caps, online + offline, derate, econ.host_cpu_capacity if reuse else None)]
    offered = whole or offered
    metric = {"carbon": "total_kg", "energy": "energy_kwh", "cost": "cost_usd"}[objective]
    tried = []
    cut = ""  # what the long solve's budget left undone
    for f in offered:
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

LONG_BUDGET_S = 90.0  # a long solve's whole time when the fleet search found a plan over the bar (the blocks try to better it)
BLOCKS_BUDGET_S = 40.0  # the blocks' bound pass of a long period, and each plan pass (or 2 s a block, if more)
BLOCK_MIN_S = 2.0  # the least time a block of it gets
# Past the plan's solving budget a pass still solves every block it needs, but in this much time all
# told (at least PAST_BLOCK_MIN_S a block): at BLOCK_MIN_S a block, a carbon year's 53 week blocks
# took 110-118 s a round past a 45 s budget (the default then; a week-long trace replayed over a year, 366 s in all).
PAST_PASS_S = 10.0
PAST_BLOCK_MIN_S = 0.2
LAGRANGE_TARGET = milp.MIP_GAP  # a gap over the bar is narrowed by pricing the backlog at the blocks' edges
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
    fleet, nodes = fleet_costs(s, objective, levers, caps, types)
    reuse = levers.offline_on_host_cpus and econ.host_cpu_capacity is not None and econ.host_cpu_capacity.feasible
    parallel.threads_started = True  # HiGHS runs here: no fork after this (parallel.py)
    return pooled_relaxation.bound(caps, per_hour(s.online_per_hour, H), per_hour(s.offline_per_hour, H), scale, per_j,
                                   fleet, nodes, type_of, per_node, tp, econ.host_cpu_capacity if reuse else None)


