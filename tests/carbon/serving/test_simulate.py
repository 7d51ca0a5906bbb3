"""The continuous-batching simulation: step times by hand, the batch cap, paged KV and preemption,
per-token SLO metrics, per-request energy, and the fast simulation against a naive one."""
import contextlib
import dataclasses
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


def paged_cost(memory_pages, page_tokens, p0_w=100.0):
    """1 s and p0_w joules per step whatever runs; one byte of KV per token, so memory_pages pages."""
    device = serving.DeviceModel("d", "test", 1e30, 1e30, 1.0, 0.0, 0.0, p0_w, 0.0, memory_pages * page_tokens)
    return serving.StepCost(0.0, 0.0, 0.0, 0.0, 1.0, 0.0, device)


def tokens_produced(res):
    """Tokens each request produced: one per step of each of its admissions."""
    r, first, last = res.segments.T
    return np.bincount(r, last - first + 1, minlength=len(res.ttft_s))


def test_the_running_batch_reaches_the_cap_with_ample_memory():
    res = simulate(np.zeros(20), np.full(20, 100), np.full(20, 50), paged_cost(10**6, 16), max_batch=8)
    assert res.max_running == 8 and res.preemptions == 0


def test_paged_kv_fills_the_cap_where_whole_output_reservation_stops_at_half():
    # 256 pages of 16 tokens; each request ends at 16 + 112 = 128 tokens (8 pages). Reserving that
    # at admission fits 256 x 16 / 128 = 32 requests, half the cap of 64; paged, each needs one
    # page for its prompt, so all 64 start (64 + 1 watermark pages) and preemption sorts out the rest.
    assert 256 * 16 // (16 + 112) == 32
    res = simulate(np.zeros(64), np.full(64, 16), np.full(64, 112), paged_cost(256, 16), max_batch=64)
    assert res.max_running == 64 and res.preemptions > 0
    assert not np.isnan(res.finish_s).any() and tokens_produced(res).tolist() == [112] * 64


def test_a_preempted_request_resumes_by_hand():
    # 5 pages of 4 tokens, two requests of prompt 4, output 9, 1 s and 100 J per step.
    res = simulate(np.zeros(2), np.array([4, 4]), np.array([9, 9]), paged_cost(5, 4), max_batch=4, page_tokens=4)
    # Step 0 prefills both (1 page each); in step 1 each crosses into a second page (4 used); in
    # step 5 both need a third, one is free: B, the newer, is preempted after 5 tokens. A ends in
    # step 8 (12 tokens, 3 pages); B is readmitted in step 9 with 4 + 5 tokens and ends in step 12.
    assert res.preemptions == 1 and res.max_running == 2
    assert res.ttft_s.tolist() == [1.0, 1.0]  # B keeps the TTFT of its first token
    assert res.finish_s.tolist() == [9.0, 13.0]
    assert res.tpot_s.tolist() == [1.0, 1.5]
    assert tokens_produced(res).tolist() == [9, 9]
    assert res.itl_s(100).tolist() == [1.0, 5.0]  # B's tokens at 1..5 s, then 10..13 s
    assert res.busy_energy_j == pytest.approx(13 * 100.0)
    # Steps 0-4 split 50/50 (step 0 by prompt tokens, 4 and 4), steps 5-8 are A's, steps 9-12 B's
    # (its recompute prefill in step 9 included).
    assert res.prefill_energy_j.tolist() == pytest.approx([50.0, 150.0])
    assert res.decode_energy_j.tolist() == pytest.approx([600.0, 500.0])


def test_memory_pressure_preempts_and_every_request_still_finishes():
    rng = np.random.default_rng(1)
    prompt, output = rng.integers(1, 200, 300), rng.integers(1, 300, 300)
    res = simulate(np.sort(rng.uniform(0, 50, 300)), prompt, output, paged_cost(400, 16), max_batch=64)
    assert res.preemptions > 0 and not res.aborted
    assert not np.isnan(res.finish_s).any() and np.array_equal(tokens_produced(res), output)
    total = res.prefill_energy_j.sum() + res.decode_energy_j.sum()
    assert total == pytest.approx(res.busy_energy_j, rel=1e-9)
    # Cut short, the requests still running have their share of the steps they ran in.
    cut = simulate(np.sort(rng.uniform(0, 50, 300)), prompt, output, paged_cost(400, 16), max_batch=64, horizon_s=30)
    assert cut.aborted and np.isnan(cut.finish_s).any()
    assert cut.prefill_energy_j.sum() + cut.decode_energy_j.sum() == pytest.approx(cut.busy_energy_j, rel=1e-9)


def test_a_request_too_big_for_memory_runs_alone():
    res = simulate(np.zeros(2), np.array([100, 1]), np.array([20, 2]), paged_cost(4, 16), max_batch=4)
    # Request 0 needs 7 pages of the 4; it runs alone, then request 1 runs.
    assert res.finish_s.tolist() == [20.0, 22.0] and res.max_running == 1 and res.preemptions == 0


def stall_case():
    """Request 0 (prompt 1, output 21) decodes in 0.01 s steps; request 1's 99-token prompt,
    prefilled in the same step as its 6th token, makes that step 1 s."""
    device = serving.DeviceModel("d", "test", 100.0, 1e12, 0.0, 0.0, 0.0, 1.0, 0.0, 1e12)
    cost = serving.StepCost(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, device)  # 1 flop per token: 0.01 s per token
    return simulate(np.array([0.0, 0.045]), np.array([1, 99]), np.array([21, 1]), cost, max_batch=4)


def test_mean_tpot_passes_a_prefill_stall_that_the_itl_percentile_fails():
    res = stall_case()
    assert res.tpot_s[0] == pytest.approx((19 * 0.01 + 1.0) / 20)  # 0.0595
    # 20 gaps, 19 of 0.01 s and one of 1 s: p99 interpolates 0.81 of the way to the largest.
    assert res.itl_s(99)[0] == pytest.approx(0.01 + 0.81 * 0.99)
    assert res.itl_s(50)[0] == pytest.approx(0.01) and math.isnan(res.itl_s(99)[1])
    assert res.attainment(Slo(ttft_s=2.0, tpot_s=0.1)) == 1.0
    assert res.attainment(Slo(ttft_s=2.0, tpot_s=0.1, tpot_metric="itl")) == 0.5
    assert res.attainment(Slo(ttft_s=2.0, tpot_s=0.1, tpot_metric="itl", percentile=50)) == 1.0
    assert res.percentile("itl_s", 50, Slo(percentile=99)) == pytest.approx(0.01 + 0.81 * 0.99)


def test_slo_metric_and_percentile_are_checked():
    with pytest.raises(ValueError, match="plan.slo_tpot_metric"):
        Slo(tpot_metric="p99_tpot")
    for bad in (0.0, -1.0, 100.5):
        with pytest.raises(ValueError, match="plan.slo_percentile"):
            Slo(percentile=bad)
    assert Slo(percentile=100).percentile == 100


def naive_simulation(arrival, prompt, output, cost, max_batch, page_tokens, pages_total, max_prefill_tokens):
    """The same policy written the slow, obvious way: every request's KV and tokens looked at every step."""
    n = len(arrival)
    order = sorted(range(n), key=lambda i: arrival[i])
    waiting, running = [], []  # running in admission order
    cached, times = [0] * n, [[] for _ in range(n)]  # KV tokens held; when each token came out
    prefill_j, decode_j = [0.0] * n, [0.0] * n
    now, i, preemptions, max_running = float(arrival[order[0]]), 0, 0, 0

    def pages(tokens):
        return math.ceil(tokens / page_tokens)

    while i < n or waiting or running:
        while i < n and arrival[order[i]] <= now:
            waiting.append(order[i])
            i += 1
        if not waiting and not running:
            now = float(arrival[order[i]])
            continue
        # Each running request decodes a token, so needs room for one more; the newest are evicted
        # until that fits, but the last one left runs anyway.
        preempted = False
        while len(running) > 1 and sum(pages(cached[r] + 1) for r in running) > pages_total:
            r = running.pop()
            cached[r] = 0
            waiting.insert(0, r)
            preemptions += 1
            preempted = True
        admitted = []
        while not preempted and waiting and len(running) + len(admitted) < max_batch:
            r = waiting[0]
            tokens = prompt[r] + len(times[r])
            held = sum(pages(cached[x] + 1) for x in running) + sum(pages(cached[x]) for x in admitted)
            if (running or admitted) and held + pages(tokens) + 1 > pages_total:  # 1 page kept free
                break
            if max_prefill_tokens and admitted and sum(cached[x] for x in admitted) + tokens > max_prefill_tokens:
                break
            admitted.append(waiting.pop(0))
            cached[r] = tokens
        max_running = max(max_running, len(running) + len(admitted))
        new = sum(cached[r] for r in admitted)
        t, e = cost.time_energy(new, sum(cached[r] * (cached[r] + 1) / 2 for r in admitted), len(running),
                                sum(cached[r] + 1 for r in running), len(admitted))
        now += t
        for r in admitted:
            prefill_j[r] += e * cached[r] / (new + len(running))
        for r in running:
            decode_j[r] += e / (new + len(running))
            cached[r] += 1
        for r in running + admitted:
            times[r].append(now)
        running = [r for r in running + admitted if len(times[r]) < output[r]]
    return times, preemptions, max_running, np.array(prefill_j), np.array(decode_j)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20), st.integers(1, 50), st.integers(1, 12)), min_size=1, max_size=25),
       st.integers(1, 6), st.integers(1, 8), st.one_of(st.just(math.inf), st.integers(1, 40)),
       st.sampled_from([0, 20, 60]))
def test_fast_simulation_matches_the_naive_one(requests, max_batch, page_tokens, pages_total, max_prefill_tokens):
    arrival = np.array([r[0] for r in requests])
    prompt = np.array([r[1] for r in requests])
    output = np.array([r[2] for r in requests])
    # Time and energy depend on every term, so a wrong running sum of context or token counts shows;
    # 3 bytes of KV per token beside 10 bytes of weights give pages_total pages.
    memory = 10.0 + 3.0 * page_tokens * pages_total if pages_total < math.inf else 1e18
    device = serving.DeviceModel("d", "test", 1e3, 1e3, 0.01, 1e-3, 2e-3, 1.0, 0.0, memory)
    cost = serving.StepCost(1.0, 0.5, 2.0, 10.0, 3.0, 1.0, device, flop_per_sampled_token=5.0)
    res = simulate(arrival, prompt, output, cost, max_batch, max_prefill_tokens=max_prefill_tokens,
                   page_tokens=page_tokens)
    times, preemptions, max_running, prefill_j, decode_j = naive_simulation(
        arrival, prompt, output, cost, max_batch, page_tokens, pages_total, max_prefill_tokens)
    assert np.allclose(res.ttft_s, [t[0] - a for t, a in zip(times, arrival)])
    assert np.allclose(res.finish_s, [t[-1] for t in times])
    assert (res.preemptions, res.max_running) == (preemptions, max_running)
    assert np.allclose(res.prefill_energy_j, prefill_j) and np.allclose(res.decode_energy_j, decode_j)
    assert res.prefill_energy_j.sum() + res.decode_energy_j.sum() == pytest.approx(res.busy_energy_j, rel=1e-9)
    for q in (50, 99):
        itl = [np.percentile(np.diff(t), q) if len(t) > 1 else math.nan for t in times]
        assert np.allclose(res.itl_s(q), itl, equal_nan=True)


def _assert_same(run, full, name: str) -> None:
    """Every compared field of two simulation results equal, arrays to the bit."""
    for f in dataclasses.fields(full):
        a, b = getattr(run, f.name), getattr(full, f.name)
        if isinstance(b, np.ndarray):
            assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), (name, f.name)
        elif f.compare:
            assert a == b or (a != a and b != b), (name, f.name)


@pytest.mark.parametrize("kind", ["roofline", "calibrated", "old_kv", "capped", "tensor_parallel", "experts",
                                  "experts_roofline", "hybrid", "hybrid_roofline"])
def test_the_simulations_scalar_step_equals_the_step_model(kind):
    # The simulation's per-step closure must be the step model, term for term, on every path:
    # one roofline; linear layers and attention apart with their own KV bandwidth and energy; a
    # power cap that stretches the step; four GPUs exchanging activations (its all-reduce table
    # interpolated by bisection with numpy's arithmetic); a mixture of experts reading the experts its
    # tokens route to; a hybrid reading and writing each request's Mamba state.
    device = serving.datasheet("h100_sxm", 4 if kind == "tensor_parallel" else 1) \
        if kind not in ("roofline", "experts_roofline", "hybrid_roofline") else round_device()
    if kind == "capped":
        device = dataclasses.replace(device, power_cap_w=device.p0_w + 50.0)
    if kind == "old_kv":  # a calibration from before KV bytes cost a streamed byte's: its own KV energy
        device = dataclasses.replace(device, e_kv_byte_j=3 * device.e_byte_j)
    key = "qwen3_30b_a3b" if kind.startswith("experts") else "nemotron_nano_9b_v2" if kind.startswith("hybrid") \
        else "llama3_8b"
    cost = serving.StepCost.of(serving.PRESETS[key], device)
    step = cost.scalar()
    rng = np.random.default_rng(1)
    capped = 0
    draws = rng.integers(0, 4000, size=(300, 4)).astype(float)
    if kind.startswith("experts"):  # decode-only steps of 0-64 tokens, where the share of experts read still grows
        draws[:150, 0] = 0.0
        draws[:150, 1] = rng.integers(0, 65, 150)
    if kind == "tensor_parallel":  # token counts across the all-reduce table: below it, at its knots, between, past it
        draws[:, 0] = 0.0
        knots = np.array(device.allreduce[0]) / cost.allreduce_bytes_per_token
        draws[:, 1] = np.r_[0.1, knots, np.exp(rng.uniform(0, np.log(8192), 300 - 1 - len(knots)))]
    for new, decode, ctx, seqs in draws:
        pairs = new * (new + 1) / 2
        args = (new, pairs, decode, ctx, min(seqs, new))
        assert step(*args) == cost.time_energy(*args)
        t, e = step(*args)
        capped += kind == "capped" and e / t >= device.power_cap_w - 1e-6
    assert kind != "capped" or capped > 0  # the cap did stretch some steps


def _composed_cost():
    from tests.carbon.serving.test_composed import MODEL
    from tests.profile import synthetic_parts

    return serving.StepCost.of(MODEL, serving.from_parts(synthetic_parts.profile(), "fake", memory_bytes=1e12))


@pytest.mark.parametrize("kind", ["roofline", "calibrated", "old_kv", "capped", "tp_table", "tp_ring", "window",
                                  "memory", "window_memory", "horizon", "abort", "composed", "experts", "hybrid",
                                  "hybrid_memory"])
def test_fast_paths_and_the_compiled_loop_are_the_full_loop_to_the_bit(kind, monkeypatch):
    # Decode-only stretches run in a tight loop or as arrays (`FAST_FORWARD`), and the whole loop runs
    # compiled where numba is there (`COMPILED`); every result must be the full per-step Python loop's
    # exactly, on every step-model path, with preemptions, windows, a horizon and an early abort.
    from bench.carbon.serving import simulate as sim
    from bench.carbon.serving import simulate_compiled

    model = serving.PRESETS["gemma3_12b" if kind.startswith("window") else "qwen3_30b_a3b" if kind == "experts"
                            else "nemotron_nano_9b_v2" if kind.startswith("hybrid") else "llama3_8b"]
    gpu, tp = ("l4", 2) if kind == "tp_ring" else ("h100_sxm", 4 if kind == "tp_table" else 1)
    device = round_device() if kind == "roofline" else serving.datasheet(gpu, tp)
    if kind == "capped":
        device = dataclasses.replace(device, power_cap_w=device.p0_w + 50.0)
    if kind == "old_kv":  # (as above)
        device = dataclasses.replace(device, e_kv_byte_j=3 * device.e_byte_j)
    if kind.endswith("memory"):  # room for about 40k tokens of KV (full-attention layers): preemptions
        device = dataclasses.replace(device, memory_bytes=model.weight_bytes + 40_000 * model.kv_bytes_per_token
                                     + 64 * model.state_bytes_per_seq)  # (and the 64 requests' Mamba state)
    cost = _composed_cost() if kind == "composed" else serving.StepCost.of(model, device)
    rng = np.random.default_rng(7)
    n = 400
    # sparse arrivals (long quiet stretches) then a burst (a full batch and a queue)
    arrival = np.sort(np.r_[rng.uniform(0, 400, n // 2), rng.uniform(100, 104, n // 2)])
    prompt = rng.integers(1, 3000, n)
    output = rng.integers(1, 900, n)
    args = dict(max_prefill_tokens=4096, horizon_s=60.0 if kind == "horizon" else None)
    if kind == "abort":  # stops once more than 20 online requests missed a 1 s TTFT
        args.update(online=rng.random(n) < 0.7, slo=Slo(ttft_s=1.0), abort_violations=20)
    assert simulate_compiled.available()  # numba is a dependency; compiled (or loaded) before the spy below
    ran = []
    monkeypatch.setattr(simulate_compiled, "run", lambda *a, _run=simulate_compiled.run: ran.append(1) or _run(*a))
    compiled = simulate(arrival, prompt, output, cost, 64, **args)
    assert ran == ([] if kind == "composed" else [1])  # the compiled loop ran (a composed step: the Python one)
    monkeypatch.setattr(sim, "COMPILED", False)
    fast = simulate(arrival, prompt, output, cost, 64, **args)
    monkeypatch.setattr(sim, "FAST_FORWARD", False)
    full = simulate(arrival, prompt, output, cost, 64, **args)
    assert not kind.endswith("memory") or full.preemptions > 0
    assert kind not in ("horizon", "abort") or full.aborted
    for name, run in {"fast": fast, "compiled": compiled}.items():
        _assert_same(run, full, name)


def test_one_process_compiles_while_the_others_wait_for_its_cache(monkeypatch, tmp_path):
    import fcntl

    from bench.carbon.serving import simulate_compiled as sc

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    with sc.compiling_alone():
        other = open(tmp_path / "cache" / "simulate_compiled.lock", "a")  # another process's view of it
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the compile is done
    other.close()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "file"))
    (tmp_path / "file").write_text("")  # no folder to lock in: compiles without one
    with sc.compiling_alone():
        pass
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))

    def no_locks(*_):  # a file system without locks (NFS without lockd)
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    entered = []
    with sc.compiling_alone():
        entered.append(True)
    assert entered  # compiled without the lock, not refused


def test_the_loop_compiles_under_that_lock(monkeypatch):
    from bench.carbon.serving import simulate_compiled as sc

    held = []

    @contextlib.contextmanager
    def spy():
        held.append(True)
        yield

    monkeypatch.setattr(sc, "compiling_alone", spy)
    assert sc.available.__wrapped__() and held


def test_a_loop_that_does_not_compile_falls_back_to_python_with_a_warning(monkeypatch, caplog):
    import numba

    from bench.carbon.serving import simulate_compiled as sc

    for name in sc.PYTHON_LOOP:  # restored after the test, compiled as they were
        monkeypatch.setattr(sc, name, getattr(sc, name))

    def broken(**_):
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(numba, "njit", broken)
    assert sc.available.__wrapped__() is False
    assert all(getattr(sc, name) is f for name, f in sc.PYTHON_LOOP.items())
    assert "simulating in Python" in caplog.text and "no LLVM here" in caplog.text
    # Without numba at all (the lent GPU machine has none): the Python loop, quietly.
    import sys

    caplog.clear()
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    assert sc.available.__wrapped__() is False and caplog.text == ""
    assert all(getattr(sc, name) is f for name, f in sc.PYTHON_LOOP.items())


@pytest.mark.parametrize("field,value", [("max_batch", 0), ("max_batch", 2.5), ("max_prefill_tokens", -1),
                                         ("abort_violations", -1)])
def test_a_cap_no_run_can_have_is_refused_not_run(field, value):
    cost = serving.StepCost.of(serving.PRESETS["llama3_8b"], serving.datasheet("h100_sxm", 1))
    args = {"max_batch": 8, field: value}
    with pytest.raises(ValueError, match=field):
        simulate(np.zeros(3), np.full(3, 10), np.full(3, 5), cost, args.pop("max_batch"), slo=Slo(), **args)


@pytest.mark.parametrize("caps", [dict(max_batch=math.inf, max_prefill_tokens=math.inf),
                                  dict(max_batch=10 ** 30, max_prefill_tokens=0.5, abort_violations=10 ** 30),
                                  dict(max_batch=2, max_prefill_tokens=1e40, memory_bytes=1e40),
                                  dict(max_batch=16, memory_bytes=1e40, prompt=2 ** 31 - 10)])
def test_caps_past_what_a_run_reaches_give_the_python_loops_results(caps, monkeypatch):
    # The compiled loop takes int64 caps: a cap no run can reach is clamped into range, to the same run;
    # prompts whose causal pairs, summed over a step's admissions, would overflow int64 run in Python.
    from bench.carbon.serving import simulate as sim
    from bench.carbon.serving import simulate_compiled

    caps = dict(caps)
    device = serving.datasheet("h100_sxm", 1)
    if "memory_bytes" in caps:
        device = dataclasses.replace(device, memory_bytes=caps.pop("memory_bytes"))
    cost = serving.StepCost.of(serving.PRESETS["llama3_8b"], device)
    rng = np.random.default_rng(3)
    arrival, prompt, output = np.sort(rng.uniform(0, 5, 60)), rng.integers(1, 2000, 60), rng.integers(1, 200, 60)
    huge = "prompt" in caps
    if huge:  # eight huge prompts at once
        arrival, prompt, output = np.zeros(8), np.full(8, caps.pop("prompt")), np.full(8, 2)
    max_batch = caps.pop("max_batch")
    assert simulate_compiled.available()
    ran = []
    monkeypatch.setattr(simulate_compiled, "run", lambda *a, _run=simulate_compiled.run: ran.append(1) or _run(*a))
    compiled = simulate(arrival, prompt, output, cost, max_batch, slo=Slo(ttft_s=0.05), **caps)
    assert ran == ([] if huge else [1])
    monkeypatch.setattr(sim, "COMPILED", False)
    python = simulate(arrival, prompt, output, cost, max_batch, slo=Slo(ttft_s=0.05), **caps)
    _assert_same(compiled, python, "compiled")
