"""The continuous-batching simulation: step times by hand, the batch cap, and the fast simulation against a naive one."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.carbon import serving
from bench.carbon.inputs import embodied
from bench.carbon.planning.pillars import Pillars
from bench.carbon.serving.simulate import Slo, simulate

LIFE = embodied.Lifetimes(4.0, 6.0)

ALL_OFF = Pillars(rightsize=True, reduce=False, reuse=False, recycle=False, shift=False)


def round_device(rate=1e12, bw=1e11):
    return serving.DeviceModel("d", "test", rate, bw, 0.0, 0.0, 0.0, 100.0, 10.0, 1e12)


def test_simulation_times_by_hand():
    # A model whose steps cost only weights: bytes_per_step / bw = 1 s per step, whatever the batch.
    model = serving.ModelSpec("tiny", layers=1, hidden=1, heads=1, kv_heads=1, head_dim=1, ffn=1, vocab=1,
                              context_tokens=64)
    cost = serving.StepCost.of(model, round_device())
    cost = serving.StepCost(0.0, 0.0, 0.0, 1e11, 0.0, 0.0, cost.device)
    res = simulate(np.array([0.0, 0.5]), np.array([10, 10]), np.array([3, 1]), cost, max_batch=8)
    # Step 1 (0-1 s) prefills request 0; request 1 arrives at 0.5 and is prefilled in step 2 (1-2 s)
    # while request 0 decodes; request 0 decodes again in step 3 (2-3 s).
    assert res.ttft_s.tolist() == [1.0, 1.5]
    assert res.finish_s.tolist() == [3.0, 2.0]
    assert res.tpot_s[0] == pytest.approx(1.0) and math.isnan(res.tpot_s[1])
    assert res.busy_energy_j == pytest.approx(3 * 100.0)  # P_0 = 100 W for 3 busy seconds
    assert res.attainment(Slo(ttft_s=1.2, tpot_s=2, attainment=0.5)) == 0.5


def test_simulation_respects_the_batch_cap():
    cost = serving.StepCost(0.0, 0.0, 0.0, 1e11, 0.0, 0.0, round_device())
    res = simulate(np.zeros(4), np.ones(4, int), np.full(4, 2), cost, max_batch=2)
    assert sorted(res.ttft_s.tolist()) == [1.0, 1.0, 3.0, 3.0]  # two wait for the first two to finish


def naive_simulation(arrival, prompt, output, cost, max_batch):
    """The same batching policy written the slow, obvious way: per-request state every step."""
    n = len(arrival)
    order = sorted(range(n), key=lambda i: arrival[i])
    waiting, running, now, i = [], [], float(arrival[order[0]]), 0
    generated = [0] * n
    ttft, finish = [None] * n, [None] * n
    while i < n or waiting or running:
        while i < n and arrival[order[i]] <= now:
            waiting.append(order[i])
            i += 1
        if not waiting and not running:
            now = float(arrival[order[i]])
            continue
        admitted = []
        while waiting and len(running) + len(admitted) < max_batch:
            admitted.append(waiting.pop(0))
        context = sum(prompt[r] + generated[r] for r in running)
        t, _ = cost.time_energy(sum(prompt[r] for r in admitted), sum(prompt[r] * (prompt[r] + 1) / 2 for r in admitted),
                                len(running), context)
        now += t
        for r in running:
            generated[r] += 1
        for r in admitted:
            ttft[r] = now - arrival[r]
            generated[r] = 1
        for r in running + admitted:
            if generated[r] == output[r] and finish[r] is None:
                finish[r] = now
        running = [r for r in running + admitted if finish[r] is None]
    return np.array(ttft), np.array(finish)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20), st.integers(1, 50), st.integers(1, 12)), min_size=1, max_size=25),
       st.integers(1, 6))
def test_fast_simulation_matches_the_naive_one(requests, max_batch):
    arrival = np.array([r[0] for r in requests])
    prompt = np.array([r[1] for r in requests])
    output = np.array([r[2] for r in requests])
    # Time depends on every term, so a wrong running sum of context or token counts shows.
    device = serving.DeviceModel("d", "test", 1e3, 1e3, 0.01, 0.0, 0.0, 1.0, 0.0, 1e18)
    cost = serving.StepCost(1.0, 0.5, 2.0, 10.0, 3.0, 1.0, device)
    res = simulate(arrival, prompt, output, cost, max_batch)
    ttft, finish = naive_simulation(arrival, prompt, output, cost, max_batch)
    assert np.allclose(res.ttft_s, ttft) and np.allclose(res.finish_s, finish)
