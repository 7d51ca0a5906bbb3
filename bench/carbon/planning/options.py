"""The planner's options that the config schema and its validation read (the solving budget, the
SLO's scope, the routing policies), kept apart from the solver so reading them loads no scipy."""

# Seconds of MILP solving one plan may take, its re-planning rounds together (`plan.solve_budget_s`).
# 35 s: three plans that spend it share two cores' workers within the 120 s bar of a year. At 45 s a
# diurnal day replayed over a year took 121.2 s on a slow day of this 2-core machine, at 35 s 102.4 s
# with the same plans and gaps; the cost: the bursty year's carbon plan (fleet search stopped at its
# budget) emits 4.2% more (results/planner_bench/, README).
SOLVE_BUDGET_S = 35.0
# Up to a week the budget is 10 s: the bar is 30 s for a day, and a 20k-request hour of long prompts
# over 24 h spent the whole 35 s on its energy plan (a flat objective) for the same plan and gap it had
# at 10 s (49.1 s against 24.8 s in all; 2026-12-08, this 2-core machine).
SHORT_SOLVE_BUDGET_S = 10.0
SHORT_PERIOD_H = 168


def default_solve_budget_s(hours: int) -> float:
    """`plan.solve_budget_s` when it is not set: by the length of the period planned."""
    return SHORT_SOLVE_BUDGET_S if hours <= SHORT_PERIOD_H else SOLVE_BUDGET_S

SLO_SCOPES = ("hour", "period")  # a plan meets the SLO in every hour, or over the whole period
ROUTINGS = ("round_robin", "least_loaded")  # how the whole-fleet verification sends each hour's requests
