"""The per-layer overhead: what a decoder layer costs beyond its measured parts, fitted on the
residuals (measured layer minus its parts) of one layer case.

Its terms, each a cost of work the layer does per call beyond its parts' cases:
- `c0`: a fixed cost per layer call: the launches of the ops between the parts (two norms, RoPE,
  SiLU-and-multiply, two residual adds, the splits and reshapes), and what a part pays in the
  layer beyond its case alone for inputs of fixed size, such as its weights read after the other
  projections' weights have passed through the caches (its case reads them again and again);
- `c_elem x tokens x hidden`: those elementwise ops, each touching a row of hidden (or of ffn or
  of the heads' widths, fixed multiples of hidden in one layer case) per token; decode's cache
  write (each request's new K and V) is such a row too;
- `c_kv x kv_elements`, the KV-cache elements the layer's attention reads (decode: K and V of
  every request's context, batch x context x kv_heads x head_dim x 2; prefill: none, it attends
  the K and V the layer has just computed and reads no cache): what reading the cache costs in
  the layer beyond the attention case alone, which reads the same cache (and, paged, makes the
  same gathered copy) call after call, where in the layer the projections run in between.

Forms, nested: `c0 + c_elem x elements`, and that `+ c_kv x kv_elements`. The richer form is
kept only where it predicts left-out points better (leave one out, RMS relative error) and its
leave-one-out fits keep a degree of freedom; so a term the data do not support is dropped, not
fitted to noise. The errors reported for the chosen model are nested: each point is predicted
by the form chosen, and fitted, without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.profile.fit import Fit, FitError, t_quantile_975

TERMS = ("c0", "elem", "kv")  # the design columns: 1, tokens x hidden, KV-cache elements read
FORMS = (("c0", "elem"), ("c0", "elem", "kv"))
_WHAT = {"c0": "{0}", "elem": "{0} x tokens x hidden", "kv": "{0} x kv_elements"}


@dataclass(frozen=True)
class Residuals:
    """One layer case's points: its design columns, the layer's measured value and its parts' sum."""

    columns: dict[str, np.ndarray]  # by TERMS
    measured: np.ndarray
    parts: np.ndarray

    @property
    def residual(self) -> np.ndarray:
        return self.measured - self.parts

    @property
    def weight(self) -> np.ndarray:
        return 1.0 / self.measured  # each point counts by its relative error

    def design(self, form: tuple[str, ...]) -> np.ndarray:
        return np.column_stack([self.columns[t] for t in form])


def _solve(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    """Weighted least squares; None where the columns are not independent on these points."""
    a = x * w[:, None]
    if np.linalg.matrix_rank(a) < x.shape[1]:
        return None
    theta, *_ = np.linalg.lstsq(a, y * w, rcond=None)
    return theta


def _composed(parts: float | np.ndarray, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return parts + np.maximum(0.0, x @ theta)  # an overhead never gives time back (as a composed step uses it)


def _usable(form: tuple[str, ...], n: int) -> bool:
    # The base form needs 3 points (as it always has); a richer one must leave its leave-one-out
    # fits a degree of freedom, or it would pass through every point it is fitted on.
    return n >= (3 if form == FORMS[0] else len(form) + 2)


def _loo(r: Residuals, idx: np.ndarray, form: tuple[str, ...]) -> np.ndarray:
    """Relative errors of the composed value at each point of `idx`, fitted on the others of `idx`."""
    x, y, w = r.design(form), r.residual, r.weight
    out = np.full(len(idx), np.nan)
    for j, i in enumerate(idx):
        keep = idx[idx != i]
        theta = _solve(x[keep], y[keep], w[keep])
        if theta is not None:
            out[j] = _composed(r.parts[i], x[i], theta) / r.measured[i] - 1
    return out


def _rms(e: np.ndarray) -> float:
    return float(np.sqrt(np.mean(e ** 2))) if np.isfinite(e).all() and len(e) else math.inf


def select(r: Residuals, idx: np.ndarray) -> tuple[tuple[str, ...], dict[str, float]]:
    """The form with the lowest leave-one-out RMS error on the points `idx` (the simpler on a tie;
    the base form where no richer one is usable on so few points), and each form's error (those
    these points can score)."""
    usable = [form for form in FORMS if _usable(form, len(idx))]
    scores = {form: _rms(_loo(r, idx, form)) for form in usable}
    scores = {f: v for f, v in scores.items() if math.isfinite(v)}  # a form these points cannot determine is out
    named = {"+".join(f): float(f"{v:.4g}") for f, v in scores.items()}  # for reading: 4 figures
    if usable == [FORMS[0]]:
        return FORMS[0], named  # nothing to choose between
    if not scores:
        raise FitError(f"{len(idx)} points do not determine even {formula(FORMS[0], ('c0', 'c_elem'))}")
    return min(scores, key=lambda f: (scores[f], len(f))), named


def formula(form: tuple[str, ...], names: tuple[str, ...]) -> str:
    return "residual = " + " + ".join(_WHAT[t].format(n) for t, n in zip(form, names))


def fit(model: str, names: tuple[str, str, str], r: Residuals) -> tuple[Fit, np.ndarray]:
    """The overhead fit of one layer case (form chosen on all its points), and each point's
    composed value predicted without it (form chosen and fitted on the others: nested)."""
    n = len(r.measured)
    sizes = len(np.unique(r.columns["elem"]))
    if n < 3 or sizes < 2:
        raise FitError(f"{model}: {n} points of {sizes} sizes; needs 3 points of at least 2 sizes")
    every = np.arange(n)
    form, scores = select(r, every)
    held = np.full(n, np.nan)
    for i in every:
        rest = every[every != i]
        try:
            inner, _ = select(r, rest)
        except FitError:
            continue
        theta = _solve(r.design(inner)[rest], r.residual[rest], r.weight[rest])
        if theta is not None:
            held[i] = _composed(r.parts[i], r.design(inner)[i], theta)
    x, y, w = r.design(form), r.residual, r.weight
    theta = _solve(x, y, w)
    used = tuple(names[TERMS.index(t)] for t in form)
    params = dict(zip(used, map(float, theta)))
    rel = np.abs(held - r.measured) / r.measured
    rel = rel[np.isfinite(rel)]
    composed = _composed(r.parts, x, theta)
    ss_res = float(np.sum((r.measured - composed) ** 2))
    ss_tot = float(np.sum((r.measured - r.measured.mean()) ** 2))
    out = Fit(model, formula(form, used), params, _intervals(used, x, y, w, theta), n, n,
              1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
              float(np.sqrt(np.mean(rel ** 2))) if len(rel) else math.nan, float(rel.max()) if len(rel) else math.nan,
              {"r2_and_cv_of": "the composed layer value (parts + overhead); CV: the form chosen and the overhead "
                               "fitted without the point (nested leave one out)",
               "form_loo_rel_error_rms": scores})
    return out, held


def _intervals(names: tuple[str, ...], x: np.ndarray, y: np.ndarray, w: np.ndarray, theta: np.ndarray
               ) -> dict[str, tuple[float, float]]:
    design = x * w[:, None]
    resid = design @ theta - y * w
    dof = len(y) - len(theta)
    cov = (float(resid @ resid) / dof if dof else math.inf) * np.linalg.pinv(design.T @ design)
    t = t_quantile_975(dof)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    return {k: (float(v - t * s), float(v + t * s)) for k, v, s in zip(names, theta, se)}
