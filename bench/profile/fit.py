"""Fitting with honest error bars: weighted least squares on relative residuals (measurements
span orders of magnitude, so each point counts by its relative error), 95% confidence intervals
from the parameter covariance, R^2, and a leave-one-group-out cross-validated error (a group is
one shape: every point of it is held out together). A fit is `poor` when R^2 or the
cross-validated error misses its threshold; a poor fit is reported, never hidden.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

POOR_R2 = 0.9
POOR_CV_ERROR = 0.25


class FitError(ValueError):
    """A fit that cannot be made (too few points, degenerate data); the message says which."""


@dataclass(frozen=True)
class Fit:
    """One fitted model: coefficients with 95% intervals and how well it predicts."""

    model: str
    formula: str
    params: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    n_points: int
    n_groups: int
    r2: float
    cv_rel_error_rms: float  # leave-one-shape-out: RMS relative error of held-out predictions
    cv_rel_error_max: float
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def quality(self) -> str:
        bad = (math.isnan(self.r2) or self.r2 < POOR_R2
               or math.isnan(self.cv_rel_error_rms) or self.cv_rel_error_rms > POOR_CV_ERROR)
        return "poor" if bad else "good"

    def to_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["quality"] = self.quality
        out["ci95"] = {k: list(v) for k, v in self.ci95.items()}
        return out

    @classmethod
    def from_dict(cls, d: "Fit | dict[str, Any] | None") -> "Fit | None":
        """A fit back from `to_dict` (a written profile); a `Fit` passes through, None stays None."""
        if not d or isinstance(d, Fit):
            return d or None
        keys = {k: d[k] for k in ("model", "formula", "params", "n_points", "n_groups", "r2", "cv_rel_error_rms",
                                  "cv_rel_error_max", "extra")}
        return cls(ci95={k: tuple(v) for k, v in d["ci95"].items()}, **keys)


def r_squared(y: np.ndarray, y_hat: np.ndarray) -> float:
    ss_res = float(np.sum((y - y_hat) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan


def t_quantile_975(dof: int) -> float:
    """Student's t at 0.975 (a 95% two-sided interval), inf without degrees of freedom. From
    `scipy.special` (the same value as `scipy.stats.t.ppf` to the bit), whose import costs a
    command a third of what `scipy.stats`' does; imported where it fits, not by every `python -m bench`."""
    from scipy import special

    return float(special.stdtrit(dof, 0.975)) if dof > 0 else math.inf


def _intervals(names: Sequence[str], theta: np.ndarray, cov: np.ndarray, dof: int) -> dict[str, tuple[float, float]]:
    t = t_quantile_975(dof)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    return {n: (float(v - t * s), float(v + t * s)) for n, v, s in zip(names, theta, se)}


def _check_size(model: str, n: int, p: int, groups: int) -> None:
    if n <= p:
        raise FitError(f"{model}: {n} points cannot fit {p} parameters with an error estimate (need at least {p + 1})")
    if groups < 2:
        raise FitError(f"{model}: all points are one shape; cross-validation needs at least 2 shapes")


def _cv(fit: Callable[[np.ndarray], np.ndarray], predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
        y: np.ndarray, groups: np.ndarray, p: int) -> tuple[float, float]:
    """Leave-one-group-out relative errors; NaN if a fold would have too few points to fit."""
    errors: list[float] = []
    for g in np.unique(groups):
        train = groups != g
        if train.sum() < p:
            return math.nan, math.nan
        try:
            theta = fit(train)
        except (FitError, np.linalg.LinAlgError, RuntimeError, ValueError):
            return math.nan, math.nan
        held = ~train
        errors.extend(((predict(theta, held) - y[held]) / y[held]).tolist())
    e = np.abs(np.asarray(errors))
    return float(np.sqrt(np.mean(e ** 2))), float(np.max(e))


def linear_fit(model: str, formula: str, names: Sequence[str], x: np.ndarray, y: np.ndarray,
               groups: np.ndarray | None = None) -> Fit:
    """y ~ x @ theta, minimising relative residuals (y > 0 required)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    n, p = x.shape
    _check_size(model, n, p, len(np.unique(groups)))
    if np.any(y <= 0):
        raise FitError(f"{model}: relative fitting needs positive values; got min {y.min():g}")

    # Columns differ by many orders of magnitude (flops ~1e12, seconds ~1e-3): solve on columns
    # scaled to unit norm, or the small ones vanish below the solver's rank cutoff.
    scale = np.linalg.norm(x / y[:, None], axis=0)
    scale[scale == 0] = 1.0

    def solve(mask: np.ndarray) -> np.ndarray:
        xw = x[mask] / y[mask, None] / scale
        theta, *_ = np.linalg.lstsq(xw, np.ones(int(mask.sum())), rcond=None)
        return theta / scale

    theta = solve(np.ones(n, bool))
    xs = x / y[:, None] / scale
    resid = (x / y[:, None]) @ theta - 1.0
    dof = n - p
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.pinv(xs.T @ xs) / np.outer(scale, scale)
    cv_rms, cv_max = _cv(solve, lambda th, m: x[m] @ th, y, groups, p)
    return Fit(model, formula, dict(zip(names, map(float, theta))), _intervals(names, theta, cov, dof), n,
               len(np.unique(groups)), r_squared(y, x @ theta), cv_rms, cv_max)


def nonlinear_fit(model: str, formula: str, names: Sequence[str], f: Callable[[np.ndarray, np.ndarray], np.ndarray],
                  x: np.ndarray, y: np.ndarray, theta0: Sequence[float], groups: np.ndarray | None = None,
                  bounds: tuple[Sequence[float], Sequence[float]] | None = None) -> Fit:
    """y ~ f(theta, x) by least squares on relative residuals (scipy `least_squares`)."""
    from scipy import optimize

    y = np.asarray(y, float)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    n, p = len(y), len(theta0)
    _check_size(model, n, p, len(np.unique(groups)))
    if np.any(y <= 0):
        raise FitError(f"{model}: relative fitting needs positive values; got min {y.min():g}")
    lo, hi = bounds if bounds is not None else ([-np.inf] * p, [np.inf] * p)

    def solve(mask: np.ndarray) -> np.ndarray:
        res = optimize.least_squares(lambda th: f(th, x[mask]) / y[mask] - 1.0, theta0, bounds=(lo, hi), x_scale="jac")
        return res.x

    res = optimize.least_squares(lambda th: f(th, x) / y - 1.0, theta0, bounds=(lo, hi), x_scale="jac")
    theta, dof = res.x, n - p
    s2 = float(res.fun @ res.fun) / dof
    cov = s2 * np.linalg.pinv(res.jac.T @ res.jac)
    cv_rms, cv_max = _cv(solve, lambda th, m: f(th, x[m]), y, groups, p)
    return Fit(model, formula, dict(zip(names, map(float, theta))), _intervals(names, theta, cov, dof), n,
               len(np.unique(groups)), r_squared(y, f(theta, x)), cv_rms, cv_max)
