"""One step's work from the architecture: the LM head runs on the sampled positions only, a step
streams the layers and the LM head, and the memory beside the KV cache is the weights held."""
import dataclasses

import pytest

from bench.carbon import serving
from bench.carbon.serving import device as devices


def flop_meter(memory_bytes: float = 1e12) -> serving.DeviceModel:
    """A device whose step energy is 1 pJ per flop and nothing else (bandwidth without limit)."""
    return serving.DeviceModel("d", "test", 1e15, 1e30, 0.0, 1e-12, 0.0, 0.0, 0.0, memory_bytes)


def test_the_lm_head_computes_logits_for_the_sampled_positions_only():
    m = serving.PRESETS["gemma3_12b"]  # a 262k vocabulary: the head is 16% of a token's linear flops
    cost = serving.StepCost.of(m, flop_meter())
    head, linear, attn = 2.0 * m.vocab * m.hidden, 2.0 * m.linear_params, 4.0 * m.layers * m.heads * m.head_dim
    # Two prompts of 1,000 tokens prefilled beside 8 decodes over 4,000 cached tokens: 10 sampled positions.
    pairs = 2 * 1000 * 1001 / 2
    _, e = cost.time_energy(2000.0, pairs, 8.0, 4000.0, 2.0)
    assert e * 1e12 == pytest.approx(linear * 2008 + head * 10 + attn * (pairs + 4000))
    # One more request in the same prompt tokens: one more row of logits, nothing else.
    _, e3 = cost.time_energy(2000.0, pairs, 8.0, 4000.0, 3.0)
    assert (e3 - e) * 1e12 == pytest.approx(head)


def test_a_step_streams_the_layers_and_lm_head_and_the_kv_cache_sees_the_weights_held():
    m = serving.PRESETS["gemma3_27b"]  # tied, with a vision tower held in memory but not run
    cost = serving.StepCost.of(m, flop_meter())
    assert cost.bytes_per_step == (m.linear_params + m.vocab * m.hidden) * 2
    assert cost.resident_bytes == m.weight_bytes == (m.linear_params + m.vocab * m.hidden + m.extra_params) * 2


def test_tensor_parallel_steps_pay_their_all_reduces_from_the_measured_table():
    model = serving.PRESETS["llama3_1_70b"]
    one, four = serving.datasheet("h100_sxm", 1), serving.datasheet("h100_sxm", 4)
    assert one.allreduce == () and "TP all-reduce: model at static power from a table" in four.method
    sizes, times, tail = four.allreduce
    assert devices.allreduce_s(four, sizes[2]) == pytest.approx(times[2])  # a measured size: its time
    mid = (sizes[3] + sizes[4]) / 2
    assert devices.allreduce_s(four, mid) == pytest.approx((times[3] + times[4]) / 2)  # interpolated
    # beyond 4 MiB, NCCL's ring: 2(n-1)/n of each further byte at 370 GB/s of bus bandwidth
    extra = 8e6
    assert devices.allreduce_s(four, sizes[-1] + extra) == pytest.approx(times[-1] + extra * 1.5 / 370e9)
    # a step of 8 decode tokens runs 2 all-reduces per layer of 8 x hidden x 2 bytes, at static power
    cost, bare = serving.StepCost.of(model, four), serving.StepCost.of(model, dataclasses.replace(four, allreduce=()))
    (t, e), (t0, e0) = cost.time_energy(0.0, 0.0, 8.0, 8000.0, 0.0), bare.time_energy(0.0, 0.0, 8.0, 8000.0, 0.0)
    comm_s = 2 * model.layers * devices.allreduce_s(four, 8 * model.hidden * 2)
    assert t - t0 == pytest.approx(comm_s) and e - e0 == pytest.approx(four.p0_w * comm_s)
    # prefill tokens travel too: 500 prompt tokens and 8 decodes make one message of 508 tokens a layer
    (t, e), (t0, e0) = cost.time_energy(500.0, 125250.0, 8.0, 8000.0, 1.0), bare.time_energy(500.0, 125250.0, 8.0, 8000.0, 1.0)
    assert t - t0 == pytest.approx(2 * model.layers * devices.allreduce_s(four, 508 * model.hidden * 2))
    assert serving.datasheet("h200_sxm", 2).allreduce == devices.allreduce_table("h100_sxm", 2)  # the same NVLink 4


def test_gpu_types_without_a_measured_all_reduce_take_the_ring_model_of_their_link():
    # H100's measured NCCL bus bandwidth is 370 of its NVLink's 450 GB/s per direction: other links get that share;
    # up to 4 MiB, H100's measured curve, made non-decreasing, its time above its floor scaled by the links' ratio
    share = 370.0 / 450.0
    for gpu, link_gb_per_s in (("b200", 900.0), ("a100_sxm", 300.0), ("l4", 32.0)):
        for tp in (2, 4, 8):
            dev, (ref_sizes, ref_times, _) = serving.datasheet(gpu, tp), devices.allreduce_table("h100_sxm", tp)
            sizes, times, tail = dev.allreduce
            assert sizes == ref_sizes and "model on" in dev.method and "not modelled" not in dev.method
            assert ("optimistic over PCIe" in dev.method) == (gpu == "l4")
            floor = min(ref_times)  # H100's fastest measured call at this degree
            rising = [min(ref_times[i:]) for i in range(len(ref_times))]  # launch jitter at small sizes is no bytes
            assert times == pytest.approx([floor + (t - floor) * 450.0 / link_gb_per_s for t in rising])
            assert all(a <= b for a, b in zip(times, times[1:]))  # a larger message never takes less time
            big = 64e6  # a prefill's message: the ring's 2(n-1)/n bytes per byte at the link's bus bandwidth
            expected = times[-1] + (big - sizes[-1]) * 2 * (tp - 1) / tp / (link_gb_per_s * share * 1e9)
            assert devices.allreduce_s(dev, big) == pytest.approx(expected)
            mid = (sizes[3] + sizes[4]) / 2
            assert devices.allreduce_s(dev, mid) == pytest.approx((times[3] + times[4]) / 2)
    # more GPUs than a node holds: a network all-reduce, not modelled, and said so
    sixteen = serving.datasheet("b200", 16)
    assert sixteen.allreduce == () and "16 GPUs span more than one node" in sixteen.method
    # PCIe is far slower than NVLink for the same message: an L4 pair pays more than a B200 pair
    message = 4096 * 5120 * 2.0
    assert (devices.allreduce_s(serving.datasheet("l4", 2), message)
            > 20 * devices.allreduce_s(serving.datasheet("b200", 2), message))
    # a tensor-parallel L4 replica's step carries it, at static power
    model, l4 = serving.PRESETS["llama3_8b"], serving.datasheet("l4", 2)
    cost, bare = serving.StepCost.of(model, l4), serving.StepCost.of(model, dataclasses.replace(l4, allreduce=()))
    (t, e), (t0, e0) = cost.time_energy(2000.0, 2e6, 8.0, 8000.0, 4.0), bare.time_energy(2000.0, 2e6, 8.0, 8000.0, 4.0)
    comm_s = 2 * model.layers * devices.allreduce_s(l4, 2008 * model.hidden * 2)
    assert comm_s > 0.01 and t - t0 == pytest.approx(comm_s) and e - e0 == pytest.approx(l4.p0_w * comm_s)
    assert cost.scalar()(2000.0, 2e6, 8.0, 8000.0, 4.0) == (t, e)  # the closure agrees on the scaled curve


def test_at_a_degree_the_reference_was_not_measured_at_the_model_is_one_knot_and_the_ring(tmp_path, monkeypatch):
    import pandas as pd

    table = tmp_path / "allreduce.csv"
    a = pd.read_csv(devices.ALLREDUCE)
    a[a["tp"] == 2].to_csv(table, index=False)  # H100 measured at 2 GPUs only
    monkeypatch.setattr(devices, "ALLREDUCE", table)
    caches = (devices.measured_allreduce, devices.ring_model, devices.allreduce_table)
    for cached in caches:
        cached.cache_clear()
    try:
        b200 = serving.datasheet("b200", 4)
        sizes, times, _ = b200.allreduce
        assert len(sizes) == 1 and times[0] == pytest.approx(8.7e-6)  # H100's floor at 2 GPUs, the nearest
        assert "8.7 us per call (h100_sxm's floor at 2 GPUs)" in b200.method
        assert devices.allreduce_s(b200, 1e8) == pytest.approx(times[0] + (1e8 - sizes[0]) * 1.5 / 740e9)
        cost = serving.StepCost.of(serving.PRESETS["llama3_70b"], b200)
        for args in ((0.0, 0.0, 8.0, 8000.0, 0.0), (3000.0, 4.5e6, 64.0, 64000.0, 2.0)):
            assert cost.scalar()(*args) == cost.time_energy(*args)  # the closure agrees with one knot
    finally:
        monkeypatch.undo()
        for cached in caches:
            cached.cache_clear()


def test_a_gpu_type_with_no_link_says_its_all_reduce_is_not_modelled(tmp_path, monkeypatch):
    links = tmp_path / "tp_links.csv"
    links.write_text("gpu,link,gb_per_s_per_direction,source\nh100_sxm,NVLink 4,450,x\n")
    monkeypatch.setattr(devices, "TP_LINKS", links)
    for cached in (devices.tp_links, devices.ring_model, devices.allreduce_table, devices.measured_allreduce):
        cached.cache_clear()
    try:
        b200 = serving.datasheet("b200", 2)
        assert b200.allreduce == () and "TP all-reduce not modelled (no table or link for b200" in b200.method
        assert serving.datasheet("h100_sxm", 2).allreduce  # a measured table needs no link
    finally:
        monkeypatch.undo()
        for cached in (devices.tp_links, devices.ring_model, devices.allreduce_table, devices.measured_allreduce):
            cached.cache_clear()


def test_a_window_must_fit_the_layers():
    base = serving.PRESETS["gemma3_12b"]
    with pytest.raises(ValueError, match="windowed_layers"):
        dataclasses.replace(base, windowed_layers=base.layers + 1)
    with pytest.raises(ValueError, match="window_tokens"):
        dataclasses.replace(base, window_tokens=-1)
