"""Fits recover the coefficients that generated synthetic measurements (with noise) within their
95% intervals, report poor fits as poor, and refuse too few points."""
import math

import numpy as np
import pandas as pd
import pytest

from bench.profile import curves
from bench.profile.fit import FitError, linear_fit

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def fresh_rng():
    """Each test draws from its own seeded stream, independent of test order."""
    global RNG
    RNG = np.random.default_rng(0)


def noisy(values, rel=0.01):
    return np.asarray(values) * (1 + rel * RNG.standard_normal(len(values)))


def inside(fit, name, true):
    lo, hi = fit.ci95[name]
    return lo <= true <= hi


def synthetic_points(n=48):
    flops = 10 ** RNG.uniform(8, 13, n)
    nbytes = 10 ** RNG.uniform(6, 10, n)
    t = 10 ** RNG.uniform(-5, -2, n)
    return pd.DataFrame({"kernel": RNG.choice(["a", "b", "c"], n), "shape_id": [f"s{i}" for i in range(n)],
                         "flops_per_call": flops, "min_bytes_per_call": nbytes, "time_per_call_s": t})


def test_energy_roofline_recovers_its_coefficients():
    points = synthetic_points()
    e_flop, e_byte, p0 = 0.5e-12, 60e-12, 90.0
    true = e_flop * points.flops_per_call + e_byte * points.min_bytes_per_call + p0 * points.time_per_call_s
    points["device_energy_per_call_j"] = noisy(true)
    fit = curves.energy_roofline(points)
    assert inside(fit, "e_flop_j", e_flop) and inside(fit, "e_byte_j", e_byte) and inside(fit, "p0_w", p0)
    assert fit.r2 > 0.99 and fit.quality == "good" and fit.cv_rel_error_rms < 0.03
    predicted = curves.predict_energy_j(fit, points.flops_per_call, points.min_bytes_per_call, points.time_per_call_s)
    assert np.allclose(predicted, true, rtol=0.03)


def test_time_roofline_recovers_rate_bandwidth_and_overhead():
    n = 40
    flops = 10 ** RNG.uniform(9, 14, n)
    intensity = 10 ** RNG.uniform(0, 4, n)  # flop per byte: both sides of the ridge (~167)
    nbytes = flops / intensity
    rate, bw, overhead = 5e14, 3e12, 8e-6
    t = np.maximum(flops / rate, nbytes / bw) + overhead
    points = pd.DataFrame({"flops_per_call": flops, "min_bytes_per_call": nbytes, "time_per_call_s": noisy(t),
                           "shape_id": [f"s{i}" for i in range(n)]})
    fit = curves.time_roofline(points)
    assert inside(fit, "log10_flop_per_s", math.log10(rate)) and inside(fit, "log10_bytes_per_s", math.log10(bw))
    assert inside(fit, "overhead_s", overhead)
    assert fit.extra["flop_per_s"] == pytest.approx(rate, rel=0.05)
    assert np.allclose(curves.predict_time_s(fit, flops, nbytes), t, rtol=0.05)


def test_batching_curve_and_saturation_batch():
    batches = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    e_inf, c = 1e-3, 5e-2  # J per token, J per call
    tokens = batches
    energy = noisy((e_inf + c / batches) * tokens, rel=0.005)
    points = pd.DataFrame({"batch_size": batches, "tokens_per_call": tokens, "device_energy_per_call_j": energy})
    fit = curves.batching(points)
    assert inside(fit, "e_inf_j", e_inf) and inside(fit, "c_j", c)
    # Doubling past B saves c / (2 (B e_inf + c)) < 5% once B > 9 c / e_inf = 450.
    assert abs(fit.extra["saturation_batch"] - 450) < 25
    # Measured: even the last doubling, 256 -> 512, saves 8% (1.195e-3 -> 1.098e-3 J), so no measured
    # doubling saves less than 5% and the largest batch is reported.
    assert fit.extra["saturation_batch_measured"] == 512
    assert curves.saturation_measured(np.array([1, 2, 4]), np.array([10.0, 6.0, 5.9])) == 2


def test_frequency_power_time_and_energy_optimal_clock():
    f = np.array([810, 1005, 1200, 1395, 1590, 1785, 1980], float)
    p_static, c_w, a = 80.0, 120.0, 2.5
    power = p_static + c_w * (f / 1000) ** a
    t = 1e-3 + 2e-3 / (f / 1000)
    points = pd.DataFrame({"clock_mhz": f, "time_per_call_s": noisy(t, 0.002),
                           "device_energy_per_call_j": noisy(power * t, 0.002)})
    out = curves.frequency(points)
    p = out["power"]
    assert inside(p, "p_static_w", p_static) and inside(p, "c_w", c_w) and inside(p, "a", a)
    assert inside(out["time"], "t0_s", 1e-3) and inside(out["time"], "k_s_ghz", 2e-3)
    energy = power * t
    assert out["energy_optimal_mhz_measured"] == f[np.argmin(energy)]
    assert out["energy_at_optimum_vs_max_clock"] < 1


def test_too_few_points_is_a_clear_error():
    with pytest.raises(FitError, match=r"3 points cannot fit 3 parameters .*need at least 4"):
        linear_fit("m", "y = x", ["a", "b", "c"], np.eye(3), np.ones(3))
    with pytest.raises(FitError, match="one shape"):
        linear_fit("m", "y = a", ["a"], np.ones((3, 1)), np.ones(3), groups=np.zeros(3))


def test_a_poor_fit_is_reported_as_poor():
    x = np.column_stack([np.ones(30), RNG.uniform(0, 1, 30)])
    y = RNG.uniform(1, 100, 30)  # unrelated to x
    fit = linear_fit("m", "y = a + b x", ["a", "b"], x, y)
    assert fit.quality == "poor"


def test_groups_too_small_are_skipped_with_a_reason():
    points = pd.DataFrame({"k": ["a", "a", "b", "b", "b", "b"], "batch_size": [1, 2, 1, 2, 4, 8],
                           "tokens_per_call": [1, 2, 1, 2, 4, 8], "device_energy_per_call_j": [2.0, 3.0, 2.0, 3.1, 5.2, 9.0]})
    fits, skipped = curves.fit_groups(points, ["k"], curves.batching, min_points=3)
    assert list(fits) == ["b"] and skipped == ["batching a: 2 points, needs 3"]
