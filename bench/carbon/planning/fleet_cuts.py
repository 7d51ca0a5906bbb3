"""Lower bounds on every fleet's optimum from one fixed-fleet LP's duals (the fleet search's cuts).

Every fixed-fleet solve of a fleet search (`fleets.search_fleets`) is the same LP but for the
bounds of its fleet columns: replicas per candidate `n`, fixed, and nodes per GPU type `m`, fixed to
the fewest that hold them. For any row multipliers y, weak duality gives, for every fleet,

    LP(n) >= sum_i (y_i lo_i if y_i > 0 else y_i hi_i) + sum_j min over x_j in its box of r_j x_j,
    r = c - A^T y,

which is affine in the fleet's columns: K + r_n @ n + r_m @ m (a Benders cut). Taken at the duals
of one fleet's LP it equals that LP's optimum there and bounds every other fleet's LP, hence its
MILP, from below. Unlike the floor at the largest fleet it grows as a fleet shrinks: the duals price
the capacity a fleet gives up. Any y gives a valid bound (a wrong sign is set to zero, HiGHS's
tolerances only weaken it); a column with no upper bound is given one that every plan of a fleet no
larger than `fleet_max` keeps (`safe_upper`), else a negative reduced cost there makes no cut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FleetCut:
    """LP(n, m) >= constant + per_replica @ n + per_node @ m for every fleet of the search."""

    constant: float
    per_replica: np.ndarray  # [C]
    per_node: np.ndarray  # [T]

    def at(self, n: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The bound at fleets n [..., C] with nodes m [..., T]."""
        return self.constant + np.asarray(n, float) @ self.per_replica + np.asarray(m, float) @ self.per_node

    def over_box(self, n: np.ndarray, m: np.ndarray, n_max: np.ndarray, m_max: np.ndarray) -> np.ndarray:
        """The least bound over every fleet between n [..., C] (nodes m) and n_max (nodes m_max): a
        bound for every fleet that holds n and is no larger than n_max."""
        r, q = self.per_replica, self.per_node
        return (self.constant + np.minimum(np.asarray(n, float) * r, n_max * r).sum(axis=-1)
                + np.minimum(np.asarray(m, float) * q, m_max * q).sum(axis=-1))


def fleet_cut(cost: np.ndarray, a, row_lo: np.ndarray, row_hi: np.ndarray, col_lo: np.ndarray,
              col_hi: np.ndarray, row_dual: np.ndarray, fleet_cols: np.ndarray, node_cols: np.ndarray
              ) -> FleetCut | None:
    """The cut from rows' multipliers `row_dual` (HiGHS's signs: >= 0 at a lower bound, <= 0 at an
    upper) of the LP min cost @ x, row_lo <= a @ x <= row_hi, col_lo <= x <= col_hi, whose columns
    `fleet_cols` and `node_cols` are the fleet's (their bounds ignored: they vary). `col_hi` must be
    finite wherever a plan's column can grow (see the module's note); None where it is not and the
    multipliers need it."""
    y = np.asarray(row_dual, float).copy()
    y[(y > 0) & ~np.isfinite(row_lo)] = 0.0  # a multiplier on a side the row does not have: no bound from it
    y[(y < 0) & ~np.isfinite(row_hi)] = 0.0
    rows = np.where(y > 0, y * np.where(np.isfinite(row_lo), row_lo, 0.0),
                    y * np.where(np.isfinite(row_hi), row_hi, 0.0))
    r = np.asarray(cost, float) - a.T @ y
    free = np.ones(len(r), bool)
    free[fleet_cols] = free[node_cols] = False
    rf, lo, hi = r[free], np.asarray(col_lo, float)[free], np.asarray(col_hi, float)[free]
    if np.any((rf > 0) & ~np.isfinite(lo)) or np.any((rf < 0) & ~np.isfinite(hi)):
        return None
    cols = np.where(rf > 0, rf * np.where(np.isfinite(lo), lo, 0.0), rf * np.where(np.isfinite(hi), hi, 0.0))
    constant = float(rows.sum() + cols.sum())
    # Rounding in the sums: the cut is lowered by more than float64 can lose adding these terms.
    constant -= 1e-9 * float(np.abs(rows).sum() + np.abs(cols).sum()) + 1e-12
    if not math.isfinite(constant):
        return None
    return FleetCut(constant, r[fleet_cols].copy(), r[node_cols].copy())
