"""Feasibility first: a request alone on an empty replica, judged in one array call, is judged as
one step at a time would judge it (full attention and sliding windows, both TPOT metrics)."""
import dataclasses

import numpy as np
import pytest

from bench.carbon import serving
from bench.carbon.planning.feasibility import alone_ok
from bench.carbon.serving.capacity import Candidate
from bench.carbon.serving.simulate import Slo
from bench.carbon.serving.step import StepCost


@pytest.mark.parametrize("model_key", ["llama3_1_8b", "gemma3_12b"])
@pytest.mark.parametrize("metric", ["mean_tpot", "itl"])
def test_alone_on_arrays_is_alone_one_request_at_a_time(model_key, metric):
    model = serving.PRESETS[model_key]
    device = serving.datasheet("h100_sxm")
    cand = Candidate("h100_sxm:8", "h100_sxm", device, 8)
    rng = np.random.default_rng(0)
    prompt, output = rng.integers(1, 30000, 300), rng.integers(1, 4000, 300)
    cost = StepCost.of(model, device)
    ttft = np.array([cost.time_energy(float(p), float(model.attended_pairs(p)), 0.0, 0.0, 1.0)[0] for p in prompt])
    ctx = prompt + (output if metric == "itl" else output / 2.0)
    tpot = np.array([cost.time_energy(0.0, 0.0, 1.0, float(model.attended_context(c)), 0.0)[0] for c in ctx])
    # SLOs at the medians: each of its two conditions alone splits these requests, so a wrong TTFT or a
    # wrong TPOT (metric, context, or the condition left out) changes the verdicts.
    slo = dataclasses.replace(Slo(ttft_s=float(np.median(ttft)), tpot_s=float(np.median(tpot))), tpot_metric=metric)
    ttft_ok, tpot_ok = ttft <= slo.ttft_s, (output <= 1) | (tpot <= slo.tpot_s)
    assert 0 < ttft_ok.sum() < len(ttft_ok) and 0 < tpot_ok.sum() < len(tpot_ok)
    assert (ttft_ok & ~tpot_ok).any() and (~ttft_ok & tpot_ok).any()
    np.testing.assert_array_equal(alone_ok(cand, model, prompt, output, slo), ttft_ok & tpot_ok)
