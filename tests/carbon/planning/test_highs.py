import math

import numpy as np
import pytest
from scipy import optimize, sparse

from bench.carbon.planning import highs


def _knapsack(n: int, seed: int):
    rng = np.random.default_rng(seed)
    value, weight = rng.integers(1, 30, n).astype(float), rng.integers(1, 30, n).astype(float)
    cons = [optimize.LinearConstraint(sparse.csr_array(weight[None, :]), -np.inf, weight.sum() / 3)]
    return -value, cons, np.ones(n), optimize.Bounds(np.zeros(n), np.ones(n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_it_finds_the_optimum_scipy_finds(seed):
    # The same model through scipy's bundled HiGHS and through highspy: the same optimum, its
    # solution feasible and whole, and a bound that is one.
    cost, cons, integ, bounds = _knapsack(25, seed)
    # A second block of rows, an equality and a two-sided one, so stacking and row bounds are exercised.
    cons = cons + [optimize.LinearConstraint(sparse.csr_array(np.eye(25)[:2]), [0.0, 1.0], [1.0, 1.0])]
    ref = optimize.milp(cost, constraints=cons, integrality=integ, bounds=bounds, options={"mip_rel_gap": 0.0})
    got = highs.milp(cost, cons, integ, bounds, 30.0, 0.0)
    assert got.status == "optimal" and got.fun == pytest.approx(ref.fun, abs=1e-9)
    assert np.allclose(got.x, np.round(got.x)) and got.x[1] == pytest.approx(1.0)
    a = sparse.vstack([c.A for c in cons])
    lb = np.concatenate([np.broadcast_to(c.lb, (c.A.shape[0],)) for c in cons])
    ub = np.concatenate([np.broadcast_to(c.ub, (c.A.shape[0],)) for c in cons])
    assert ((a @ got.x >= lb - 1e-9) & (a @ got.x <= ub + 1e-9)).all()
    assert got.bound <= got.fun + 1e-9 and got.gap == pytest.approx(0.0, abs=1e-9)


def test_an_lp_is_its_own_bound_and_statuses_are_named():
    cost, cons, integ, bounds = _knapsack(10, 3)
    lp = highs.milp(cost, cons, np.zeros(10), bounds, 30.0, 0.0)
    ref = optimize.linprog(cost, A_ub=cons[0].A, b_ub=cons[0].ub, bounds=list(zip(bounds.lb, bounds.ub)))
    assert lp.status == "optimal" and lp.fun == pytest.approx(ref.fun) and lp.bound == lp.fun and lp.gap == 0.0
    # Infeasible: x0 >= 2 with x0 <= 1.
    bad = highs.milp(cost, cons + [optimize.LinearConstraint(sparse.csr_array(np.eye(10)[:1]), 2.0, np.inf)], integ,
                     bounds, 30.0, 0.0)
    assert bad.status == "infeasible" and bad.x is None and math.isnan(bad.fun)
    # Unbounded below: x0 free with a negative cost and no row on it.
    free = highs.milp(np.array([-1.0, 0.0]), [optimize.LinearConstraint(sparse.csr_array([[0.0, 1.0]]), 0.0, 1.0)],
                      np.zeros(2), optimize.Bounds([0.0, 0.0], [np.inf, 1.0]), 30.0, 0.0)
    assert free.status in ("unbounded", "infeasible_or_unbounded") and free.x is None


def test_a_time_limit_is_a_limit_with_its_bound():
    # A 20,000-item knapsack cannot close in 10 ms (building and presolving it take longer): stopped at the limit it
    # is "limit", and where it holds a point its bound is below it.
    cost, cons, integ, bounds = _knapsack(20_000, 4)
    res = highs.milp(cost, cons, integ, bounds, 0.01, 0.0)
    assert res.status == "limit"
    if res.x is not None:
        assert math.isnan(res.bound) or res.bound <= res.fun + 1e-9
