"""The planner's options that the config schema and its validation read (the solving budget, the
SLO's scope, the routing policies), kept apart from the solver so reading them loads no scipy."""

# Seconds of MILP solving one plan may take, its re-planning rounds together (`plan.solve_budget_s`).
# 35 s: three plans that spend it share two cores' workers within the 120 s bar of a year. At 45 s a
# diurnal day replayed over a year took 121.2 s on a slow day of this 2-core machine, at 35 s 102.4 s
# with the same plans and gaps; the cost: the bursty year's carbon plan (fleet search stopped at its
# budget) emits 4.2% more (results/planner_bench/, README).
SOLVE_BUDGET_S = 35.0

SLO_SCOPES = ("hour", "period")  # a plan meets the SLO in every hour, or over the whole period
ROUTINGS = ("round_robin", "least_loaded")  # how the whole-fleet verification sends each hour's requests
