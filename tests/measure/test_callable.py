"""`bench.measure_callable`: any callable, the same protocol, meters and quality flag."""
import math

import pytest
import torch

import bench
from bench.measure.meters import MeterConf

pytestmark = pytest.mark.realtime  # wall-clock polling: runs with no other test beside it


def test_a_callable_is_measured_with_its_method_and_quality(tmp_path):
    from bench.measure.lock import LockConf

    a = torch.randn(96, 96)
    calls = []

    def matmul():
        calls.append(1)
        return a @ a

    point = bench.measure_callable(matmul, tokens=96, flops=2 * 96**3, bytes=3 * 96 * 96 * 4, device="cpu",
                                   meter=MeterConf(host="model"), lock=LockConf(dir=str(tmp_path / "locks")),
                                   trials=2, min_window_s=0.05, warmup_s=0.01)
    assert len(calls) > 10  # warm-up, calibration, idle-free windows: many calls, not one
    assert point.time_per_call_s > 0 and not math.isnan(point.time_per_call_s_cv)
    assert point.flop_per_s == pytest.approx(2 * 96**3 / point.time_per_call_s)
    [cpu] = point.domains.values()
    assert cpu.method.startswith("model:") and cpu.energy_per_call_j > 0
    assert cpu.energy_per_token_j == pytest.approx(cpu.energy_per_call_j / 96)
    assert point.quality in ("ok", "noisy")  # the same flag as a stored point
    assert point.columns["energy_method"] == f"cpu={cpu.method}"  # the columns a stored point has
    assert point.columns["trials_discarded"] == 1  # measure.discard_first: the first trial absorbs what a lead-in cannot


def test_unknown_protocol_settings_and_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown protocol setting.*trails"):
        bench.measure_callable(lambda: None, device="cpu", trails=3)
    with pytest.raises(ValueError, match="min_window_s=-1 must be > 0 seconds"):
        bench.measure_callable(lambda: None, device="cpu", min_window_s=-1)
    with pytest.raises(ValueError, match="trials='3' must be an integer"):
        bench.measure_callable(lambda: None, device="cpu", trials="3")
    with pytest.raises(ValueError, match="tokens"):
        bench.measure_callable(lambda: None, device="cpu", tokens=0)
    with pytest.raises(ValueError, match="device"):
        bench.measure_callable(lambda: None, device="tpu")


def test_points_on_the_host_cpu_are_judged_by_the_cpu_threshold(tmp_path):
    from bench.measure.lock import LockConf

    a = torch.randn(64, 64)
    kw = dict(device="cpu", meter=MeterConf(host="model"), lock=LockConf(dir=str(tmp_path / "locks")), trials=2,
              min_window_s=0.03, warmup_s=0.0, discard_first=False)
    strict = bench.measure_callable(lambda: a @ a, cv_threshold=10.0, cpu_cv_threshold=1e-12, **kw)
    lax = bench.measure_callable(lambda: a @ a, cv_threshold=1e-12, cpu_cv_threshold=10.0, **kw)
    assert "noisy" in strict.quality and "noisy" not in lax.quality
