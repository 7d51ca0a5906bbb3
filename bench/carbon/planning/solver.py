"""The planner's solve: which formulation plans a period (`solve`).

A period whose offline work may wait and that is longer than `LONG_H` hours is solved by the fleet
search and in blocks, with a bound on the optimum (`blocks.solve_long`); any other is one MILP
over its hours (`milp.solve_hours`, which the long solve's blocks and fleets call too).
"""
from __future__ import annotations

import math

import numpy as np

from bench.carbon.planning import blocks, milp
from bench.carbon.planning.errors import PlanError
from bench.carbon.planning.pillars import Pillars
from bench.carbon.planning.setting import OBJECTIVES, Economics, Plan, Setting

LONG_H = 336  # a longer period with waiting is solved in blocks of about `blocks.BLOCK_H` hours


def solve(s: Setting, objective: str, pillars: Pillars, econ: Economics, name: str,
          derate: dict[str, np.ndarray] | None = None, time_limit_s: float = milp.TIME_LIMIT_S,
          ties: bool = True, solve_by: float = math.inf, narrow: bool = True) -> Plan:
    """The plan minimising `objective`; `derate`: candidate -> per-hour share of its capacity the
    plan may use (re-planning after a verification found the hour's replicas overloaded).
    `ties=False` leaves the tie-break solves for `milp.break_ties` (a plan that fails its
    verification needs none). `solve_by` (`time.monotonic()`): the plan's solving budget ends
    there; past it a solve still gets `milp.MIN_SOLVE_S` (it must give a plan), and work that only
    narrows a bound is left undone. `narrow=False` (a re-planning round): a long period's plan
    comes without the work that only narrows its gap, left in `solver_state` for `break_ties`
    once the plan meets its SLO."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: choose one of {OBJECTIVES}")
    levers = pillars.levers()
    if not milp.allowed_candidates(s, levers, derate):
        raise PlanError("no candidate meets the SLO" + ("" if levers.any_candidate else f" (only {s.reference} allowed)"))
    deadline = s.deadline_h if levers.offline_within_deadline else 1
    if deadline > 1 and len(s.intensity_g_per_kwh) > LONG_H:
        return blocks.solve_long(s, objective, pillars, econ, name, derate, time_limit_s, solve_by, narrow)
    return milp.solve_hours(s, objective, pillars, econ, name, derate, time_limit_s, ties=ties, solve_by=solve_by)
