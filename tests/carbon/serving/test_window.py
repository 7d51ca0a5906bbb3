"""Sliding-window attention (Gemma 3): the context and prefill pairs windowed layers attend to, and
the KV pages they hold, in the model and in the simulation, against brute force."""
import dataclasses

import numpy as np
import pytest

from bench.carbon import serving
from bench.carbon.serving.models import preset
from bench.carbon.serving.simulate import simulate


def spec(window, windowed_layers, layers=6):
    return serving.ModelSpec("w", layers=layers, hidden=8, heads=2, kv_heads=1, head_dim=4, ffn=8, vocab=16,
                             context_tokens=1 << 20, window_tokens=window, windowed_layers=windowed_layers)


@pytest.mark.parametrize("window,windowed", [(5, 5), (64, 3), (1, 6)])
def test_attended_context_and_pairs_match_brute_force(window, windowed):
    m = spec(window, windowed)
    share = windowed / m.layers
    for b in [1, 2, window - 1, window, window + 1, 3 * window + 7, 500]:
        if b < 1:
            continue
        # per layer, query i (1-based) of a prompt attends to i keys, or min(i, W) in a windowed layer
        pairs = (1 - share) * b * (b + 1) / 2 + share * sum(min(i, window) for i in range(1, b + 1))
        assert m.attended_pairs(b) == pytest.approx(pairs)
        assert m.attended_context(b) == pytest.approx((1 - share) * b + share * min(b, window))


def test_a_model_without_a_window_attends_to_everything():
    m = spec(0, 0)
    assert m.windowed_share == 0.0
    assert m.attended_context(1234) == 1234 and m.attended_pairs(10) == 55


def test_gemma3_presets_carry_their_pattern():
    g = preset("google/gemma-3-12b-it")
    assert (g.window_tokens, g.layers - g.windowed_layers) == (1024, 8)  # every sixth of 48 layers is global
    assert (preset("gemma3_27b").layers - preset("gemma3_27b").windowed_layers) == 10
    assert preset("gemma3_1b").window_tokens == 512
    assert preset("llama3_1_8b").windowed_share == 0.0 and preset("qwen3_8b").windowed_share == 0.0


class Recording(serving.StepCost):
    """A StepCost that records what each step ran (1 s per step)."""

    def scalar(self):
        steps = self.__dict__.setdefault("steps", [])

        def step(new_tokens, pairs, decode, context, seqs):
            steps.append((new_tokens, pairs, decode, context, seqs))
            return 1.0, 1.0
        return step


def recording(model, memory_tokens=10**9, page_tokens=16):
    device = serving.DeviceModel("d", "test", 1e30, 1e30, 1.0, 0.0, 0.0, 1.0, 0.0,
                                 memory_tokens * model.kv_bytes_per_token + model.weight_bytes)
    base = serving.StepCost.of(model, device)
    return Recording(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})


def test_each_step_counts_the_windowed_context_and_pairs_of_every_request():
    rng = np.random.default_rng(3)
    m = spec(40, 5)
    n = 60
    arrival, prompt, output = np.sort(rng.uniform(0, 30, n)), rng.integers(1, 120, n), rng.integers(1, 150, n)
    cost = recording(m)
    res = simulate(arrival, prompt, output, cost, max_batch=16, max_prefill_tokens=200)
    assert res.preemptions == 0  # ample memory: each request's one admission prefills its prompt
    steps = np.array(cost.steps)
    context, pairs = np.zeros(len(steps)), np.zeros(len(steps))
    for r, first, last in res.segments:
        pairs[first] += m.attended_pairs(prompt[r])
        for k in range(first + 1, last + 1):  # in step k it decodes with prompt + (k - first) tokens cached
            context[k] += m.attended_context(prompt[r] + k - first)
    np.testing.assert_allclose(steps[:, 1], pairs)
    np.testing.assert_allclose(steps[:, 3], context)


def test_a_window_wider_than_every_context_changes_nothing():
    rng = np.random.default_rng(4)
    n = 80
    arrival, prompt, output = np.sort(rng.uniform(0, 20, n)), rng.integers(1, 200, n), rng.integers(1, 200, n)
    plain, wide = recording(spec(0, 0), memory_tokens=3000), recording(spec(10**6, 5), memory_tokens=3000)
    a = simulate(arrival, prompt, output, plain, max_batch=32)
    b = simulate(arrival, prompt, output, wide, max_batch=32)
    assert a.preemptions > 0  # tight memory: the paths that free and evict pages run
    assert plain.steps == wide.steps and a.preemptions == b.preemptions
    np.testing.assert_array_equal(a.finish_s, b.finish_s)


def test_windowed_layers_hold_only_the_window_so_more_requests_fit():
    # 16-token pages, window 32: a windowed layer keeps at most 3 pages (the window and the page it
    # straddles), but, as in vLLM, a prompt's admission needs every layer's pages for the whole prompt
    # and those behind the window are freed once its prefill has run. 150-token prompts (10 pages),
    # one decode each, in 40 pages; one of two layers windowed: a request holds 10 + 3 = 13 of 80
    # layer-pages after its prefill, 20 during it.
    prompt, output = np.full(10, 150), np.full(10, 2)
    full = simulate(np.zeros(10), prompt, output, recording(spec(0, 0, layers=2), memory_tokens=40 * 16), 10)
    half = simulate(np.zeros(10), prompt, output, recording(spec(32, 1, layers=2), memory_tokens=40 * 16), 10)
    # Full: three of 10 pages (+1 free) per step, never more. Half: step 0 admits three (60 + 20 + 2
    # > 80), which keep 39 after their prefill, so step 1 admits a fourth beside them (39 + 20 + 2 <= 80;
    # a fifth would not fit). Holding 2 pages per windowed layer instead of 3 would admit five.
    assert (full.max_running, half.max_running) == (3, 4)
    assert full.preemptions == half.preemptions == 0


def test_pages_are_all_returned_after_a_busy_windowed_run():
    # Tight memory, preemptions and window crossings; then, after an idle gap, a second batch must be
    # admitted exactly as on an empty replica: any page the first run leaked would hold it back.
    rng = np.random.default_rng(5)
    m = spec(48, 3)
    n = 120
    first = (np.sort(rng.uniform(0, 10, n)), rng.integers(1, 300, n), rng.integers(1, 400, n))
    second = (np.zeros(40), rng.integers(100, 400, 40), rng.integers(20, 300, 40))
    cost = lambda: recording(m, memory_tokens=2500)  # noqa: E731
    busy = simulate(first[0], first[1], first[2], cost(), max_batch=64)
    assert busy.preemptions > 0
    gap = float(np.nanmax(busy.finish_s)) + 100.0
    both = simulate(np.r_[first[0], second[0] + gap], np.r_[first[1], second[1]], np.r_[first[2], second[2]],
                    cost(), max_batch=64)
    alone = simulate(second[0], second[1], second[2], cost(), max_batch=64)
    assert alone.max_running < 40  # memory, not the batch cap, limits the second batch
    np.testing.assert_allclose(both.ttft_s[n:], alone.ttft_s)
    np.testing.assert_allclose(both.finish_s[n:] - gap, alone.finish_s)
