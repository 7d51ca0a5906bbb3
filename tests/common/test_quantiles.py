"""Percentiles of groups of repeated, scaled values against numpy on the distribution built out."""
import numpy as np
import pytest

from bench.common import quantiles


def groups_of(rng):
    out = []
    for _ in range(int(rng.integers(1, 6))):
        values = rng.lognormal(3, 1, int(rng.integers(1, 60)))
        if rng.random() < 0.3:
            values = np.round(values)  # ties
        factors = rng.uniform(0, 500, int(rng.integers(1, 25)))
        if rng.random() < 0.2:
            factors[0] = 0.0  # a zero-carbon hour
        if rng.random() < 0.3:
            factors = np.ones(len(factors))  # plain repetition
        out.append((values, factors))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_percentiles_and_mean_are_numpys_on_every_product(seed):
    rng = np.random.default_rng(seed)
    groups = groups_of(rng)
    built = np.concatenate([np.outer(v, f).ravel() for v, f in groups])
    qs = [0, 1, 37.5, 50, 90, 99, 100]
    assert quantiles.size(groups) == len(built)
    assert quantiles.percentiles(groups, qs) == pytest.approx(np.percentile(built, qs), rel=1e-12, abs=0)
    assert quantiles.mean(groups) == pytest.approx(built.mean(), rel=1e-12)
    ranks = rng.integers(0, len(built), 5)
    # An order statistic is one of the products, not a threshold near it.
    assert quantiles.order_statistics(groups, ranks).tolist() == pytest.approx(np.sort(built)[ranks], rel=4e-16, abs=0)


def test_nothing_has_no_percentile():
    assert all(np.isnan(quantiles.percentiles([], [50, 99])))
    assert np.isnan(quantiles.mean([(np.zeros(0), np.ones(3))]))


def test_negative_values_or_factors_are_refused():
    with pytest.raises(ValueError, match=">= 0"):
        quantiles.percentiles([(np.array([1.0, 2.0]), np.array([1.0, -1.0]))], [50])
    with pytest.raises(ValueError, match=">= 0"):
        quantiles.percentiles([(np.array([-1.0, 2.0]), np.array([1.0]))], [50])
