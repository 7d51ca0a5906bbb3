"""MILPs solved by HiGHS through its own Python interface (`highspy`).

`scipy.optimize.milp` bundles an older HiGHS: on the planner's 24-hour problems it spent 1-2 s at
the root node where HiGHS 1.16 closes the same model in about 0.2 s (feasibility jump and the
newer primal heuristics find the optimum before the cuts are done), and `highspy` takes options
scipy does not pass on. The model is handed over as arrays (a column-wise sparse matrix), so
nothing is built row by row in Python.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass

import highspy
import numpy as np
from scipy import optimize, sparse

# Statuses of a solve stopped at a limit (its point, if any, is feasible; its bound still a bound).
_LIMITS = {"kTimeLimit", "kIterationLimit", "kSolutionLimit", "kObjectiveBound", "kObjectiveTarget", "kInterrupt",
           "kHighsInterrupt", "kMemoryLimit"}


@dataclass
class Result:
    x: np.ndarray | None  # None: no feasible point found
    fun: float
    gap: float  # the solver's relative gap (NaN: no bound known)
    bound: float  # its dual bound, a lower bound on the optimum (NaN: none)
    status: str  # "optimal", "infeasible", "limit" (a time or other limit stopped it), "unbounded",
    # "infeasible_or_unbounded" (presolve could not tell), "error"
    message: str
    row_dual: np.ndarray | None = None  # an LP solved to optimality: its rows' duals (HiGHS's signs)


def _inf(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, float)
    return np.where(np.isposinf(a), highspy.kHighsInf, np.where(np.isneginf(a), -highspy.kHighsInf, a))


@contextlib.contextmanager
def quiet_stdout():
    """HiGHS prints its banner and some notes to file descriptor 1 whatever its display option;
    the report goes to stdout, so they are sent to /dev/null for the solve."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # captured stdout (tests): nothing to protect
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def milp(cost: np.ndarray, constraints: list[optimize.LinearConstraint], integrality: np.ndarray,
         bounds: optimize.Bounds, time_limit_s: float, rel_gap: float) -> Result:
    """Minimise cost @ x subject to the stacked `constraints` (scipy's `LinearConstraint`s), the
    `bounds`, and `integrality` (1: integer), stopping at `rel_gap` or `time_limit_s`."""
    n = len(cost)
    a = sparse.vstack([sparse.csr_array(c.A) for c in constraints]).tocsc() if constraints else sparse.csc_array((0, n))
    a.sum_duplicates()  # one entry per row and column, as HiGHS expects
    a.eliminate_zeros()
    lo = np.concatenate([np.broadcast_to(np.asarray(c.lb, float), (c.A.shape[0],)) for c in constraints]) \
        if constraints else np.zeros(0)
    hi = np.concatenate([np.broadcast_to(np.asarray(c.ub, float), (c.A.shape[0],)) for c in constraints]) \
        if constraints else np.zeros(0)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, a.shape[0]
    lp.col_cost_ = np.asarray(cost, float)
    lp.col_lower_ = _inf(np.broadcast_to(bounds.lb, (n,)))
    lp.col_upper_ = _inf(np.broadcast_to(bounds.ub, (n,)))
    lp.row_lower_, lp.row_upper_ = _inf(lo), _inf(hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(float)
    if np.any(integrality):
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                           for i in np.asarray(integrality)]
    with quiet_stdout():
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        # One thread: HiGHS otherwise starts a pool of worker threads that outlive the solve and spin
        # for a while after it, taking cores from whatever runs next in the process (real-time
        # measurements among them); the planner runs its plans side by side in processes instead.
        h.setOptionValue("threads", 1)
        h.setOptionValue("time_limit", float(time_limit_s))
        h.setOptionValue("mip_rel_gap", float(rel_gap))
        h.passModel(lp)
        h.run()
    status = h.getModelStatus()
    name = status.name if hasattr(status, "name") else str(status).split(".")[-1]
    info = h.getInfo()
    # A feasible point, taken only from a solve that ended optimal or at a limit.
    has_x = info.primal_solution_status == 2 and (name == "kOptimal" or name in _LIMITS)
    x = np.asarray(h.getSolution().col_value, float) if has_x else None
    mip = bool(np.any(integrality))
    fun = float(info.objective_function_value) if has_x else math.nan
    if mip:
        bound = float(info.mip_dual_bound)
        gap = float(info.mip_gap) if has_x else math.nan
    else:  # an LP solved to optimality is its own bound
        bound = fun if name == "kOptimal" else math.nan
        gap = 0.0 if name == "kOptimal" else math.nan
    if not math.isfinite(bound):
        bound, gap = math.nan, math.nan
    if name == "kOptimal":
        kind = "optimal"
    elif name == "kInfeasible":
        kind = "infeasible"
    elif name in _LIMITS:
        kind = "limit"
    elif name == "kUnbounded":
        kind = "unbounded"
    elif name == "kUnboundedOrInfeasible":
        kind = "infeasible_or_unbounded"
    else:
        kind = "error"
    row_dual = None
    if not mip and kind == "optimal" and info.dual_solution_status == 2:
        row_dual = np.asarray(h.getSolution().row_dual, float)
    return Result(x, fun, gap, bound, kind, h.modelStatusToString(status), row_dual)
