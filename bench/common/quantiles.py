"""Percentiles of a distribution given as groups of repeated values, without building it.

A plan's hours that share one simulated result (a replayed trace: a year is the same hour many
times over) hold the same per-request values, each hour scaled by its own factor (its grid
intensity for grams). The distribution is the union over groups of the products value x factor:
a year of 20,000 requests an hour is 175 million of them, too many to build and sort. Its order
statistics are found by bisection on the count of products at or below a threshold, and
combined as `numpy.percentile`'s default (linear) method does.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Groups = Sequence[tuple[np.ndarray, np.ndarray]]  # (values, factors): every value times every factor

_SHRINK = 1.0 - 4 * np.finfo(float).eps
_BISECTIONS = 200  # halvings of the threshold interval; it stops sooner once no float lies between


def size(groups: Groups) -> int:
    return int(sum(len(v) * len(f) for v, f in groups))


def mean(groups: Groups) -> float:
    n = size(groups)
    return float(sum(np.sum(v) * np.sum(f) for v, f in groups) / n) if n else math.nan


def _count_at_or_below(groups: list[tuple[np.ndarray, np.ndarray]], t: np.ndarray) -> np.ndarray:
    """Products at or below each threshold in `t` (values sorted, factors >= 0), never more than
    there are: counted as value <= (t / factor) shrunk by four roundings, so a product within a few
    units in the last place of t may be left out (the bisection then ends that far above the
    statistic, and `_largest_at_or_below` returns the statistic itself)."""
    out = np.zeros(len(t), np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero factor: every product is 0
        for values, factors in groups:
            limit = np.where(factors[None, :] > 0, t[:, None] / factors[None, :] * _SHRINK,
                             np.where(t[:, None] >= 0, np.inf, -np.inf))
            out += np.searchsorted(values, limit, side="right").sum(axis=1)
    return out


def order_statistics(groups: Groups, ranks: np.ndarray) -> np.ndarray:
    """The `ranks`-th smallest products (0-based): for each, the smallest float threshold with more
    than `rank` products at or below it."""
    gs = [(np.sort(np.asarray(v, float)), np.asarray(f, float)) for v, f in groups if len(v) and len(f)]
    if any(v[0] < 0 or f.min() < 0 for v, f in gs):  # the bisection's bounds and counts assume it
        raise ValueError("quantiles of products: values and factors must be >= 0")
    ranks = np.asarray(ranks, np.int64)
    lo = np.full(len(ranks), min(float(v[0] * f.min()) for v, f in gs))
    hi = np.full(len(ranks), max(float(v[-1] * f.max()) for v, f in gs))
    lo = np.nextafter(lo, -np.inf)  # lo: fewer than rank + 1 at or below; hi: enough
    for _ in range(_BISECTIONS):
        mid = lo + (hi - lo) / 2.0
        open_ = (mid > lo) & (mid < hi)
        if not open_.any():
            break
        enough = _count_at_or_below(gs, mid) >= ranks + 1
        hi = np.where(open_ & enough, mid, hi)
        lo = np.where(open_ & ~enough, mid, lo)
    return _largest_at_or_below(gs, hi)


def _largest_at_or_below(groups: list[tuple[np.ndarray, np.ndarray]], t: np.ndarray) -> np.ndarray:
    """The largest product at or below each threshold: the statistic itself, not the threshold
    that bounds it (bisection towards a zero product would stop at a tiny positive one)."""
    out = np.full(len(t), -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for values, factors in groups:
            pos = factors[None, :] > 0
            limit = np.where(pos, t[:, None] / factors[None, :], np.where(t[:, None] >= 0, np.inf, -np.inf))
            f = np.where(pos, factors[None, :], 0.0)
            idx = np.searchsorted(values, limit, side="right")
            for k in (idx - 1, idx):  # the value the division put last, and the next (rounding either way)
                product = values[np.clip(k, 0, len(values) - 1)] * f
                ok = (k >= 0) & (k < len(values)) & (product <= t[:, None])
                out = np.maximum(out, np.where(ok, product, -np.inf).max(axis=1))
    return np.where(np.isfinite(out), out, t)


def percentiles(groups: Groups, qs: Sequence[float]) -> list[float]:
    """`numpy.percentile(all products, qs)` (linear interpolation between order statistics)."""
    n = size(groups)
    if n == 0:
        return [math.nan] * len(qs)
    pos = np.asarray(qs, float) / 100.0 * (n - 1)
    below, above = np.floor(pos).astype(np.int64), np.ceil(pos).astype(np.int64)
    stats = order_statistics(groups, np.concatenate([below, above]))
    a, b = stats[:len(qs)], stats[len(qs):]
    return [float(x + (y - x) * (p - k)) for x, y, p, k in zip(a, b, pos, below)]
