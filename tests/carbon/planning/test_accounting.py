"""Per-request figures of hours that share one simulated result, as a replayed trace's do."""
from types import SimpleNamespace

import numpy as np
import pytest

from bench.carbon.planning import accounting
from bench.carbon.planning.verify import HourResult


def hour(rng, n):
    prefill, decode = rng.lognormal(2, 1, n), rng.lognormal(4, 0.5, n)
    return HourResult(n, n, 1.0, set(), prefill_j=prefill, decode_j=decode, tokens=rng.integers(1, 4000, n).astype(float))


def test_shared_hours_give_the_figures_of_every_request_built_out(monkeypatch):
    rng = np.random.default_rng(3)
    a, b, c = hour(rng, 300), hour(rng, 120), hour(rng, 1)
    hours = [a, b, a, a, c, b, a] * 5  # 35 hours, three results
    plan = SimpleNamespace(verification=SimpleNamespace(hours=hours))
    intensity = rng.uniform(0, 600, len(hours))
    intensity[4] = 0.0
    direct = accounting.per_request(plan, intensity, 1.2).set_index("per request")
    monkeypatch.setattr(accounting, "DIRECT_MAX", 0)
    grouped = accounting.per_request(plan, intensity, 1.2).set_index("per request")
    assert list(grouped.index) == list(direct.index)
    for col in ("p50", "p90", "p99", "mean"):
        assert grouped[col].to_numpy() == pytest.approx(direct[col].to_numpy(), rel=1e-12)
    # And both are the figures of the period's requests, hour by hour.
    grams = np.concatenate([(h.prefill_j + h.decode_j) * 1.2 / 3.6e6 * i for h, i in zip(hours, intensity)])
    assert direct.loc["gCO2e", "p90"] == pytest.approx(np.percentile(grams, 90), rel=1e-12)
    assert direct.loc["total J", "mean"] == pytest.approx(np.concatenate([h.prefill_j + h.decode_j for h in hours]).mean())
