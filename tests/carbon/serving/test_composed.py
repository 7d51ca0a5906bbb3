"""The serving step composed from measured parts is the profile's composed layer, times layers,
plus the LM head; a device model without parts keeps the single roofline."""
import dataclasses

import pytest

from bench.carbon.serving import ModelSpec, StepCost, from_parts, from_profile
from bench.carbon.serving.composed import LM_HEAD_ROOFLINE
from bench.profile import compose
from kernels.registry import causal_pairs
from tests.profile import synthetic_parts as sp

D = sp.DIMS
MODEL = ModelSpec("two small layers", 2, D.hidden, D.heads, D.kv_heads, D.head_dim, D.ffn, vocab=64,
                  context_tokens=4096)


def composed_layer(p, kernel: str, batch: int, length: int) -> tuple[float, float]:
    """The profile side's prediction of one layer point: its parts' fits plus the fitted overhead
    (its KV term, where the fit kept one, on K and V of every request's context)."""
    s = sp.shape(batch, length, p.phase_of(kernel))
    row = sp.point(kernel, s, sp.np.random.default_rng(0))
    parts, why = compose.part_costs(sp.pd.Series(row), p.fits, p.name)  # no measured points: every part's fit
    assert why is None and not any(x["source"].startswith("measured:") for x in parts)
    fits = p.fits["layer_overhead"][kernel]
    elements, kv = row["tokens_per_call"] * D.hidden, sp.kv_elements(s, p.phase_of(kernel))
    t, e = fits["time"].params, fits["energy"].params
    return (sum(x["time_s"] for x in parts) + t["c0_s"] + t["c_elem_s"] * elements + t.get("c_kv_s", 0.0) * kv,
            sum(x["energy_j"] for x in parts) + e["e0_j"] + e["e_elem_j"] * elements + e.get("e_kv_j", 0.0) * kv)


@pytest.mark.parametrize("with_kv", [False, True], ids=["overhead without kv term", "with kv term"])
def test_the_composed_step_is_its_layers_plus_the_lm_head(with_kv):
    profile = sp.profile_with_kv(sp.OVERHEAD_KV) if with_kv else sp.profile()
    decode_fit = profile.fits["layer_overhead"]["layer.decode_paged"]["time"]
    assert ("c_kv_s" in decode_fit.params) == with_kv  # a fit without the term composes as before it existed
    device = from_parts(profile, "fake", memory_bytes=1e12)
    cost = StepCost.of(MODEL, device)
    head = device.parts.linear[LM_HEAD_ROOFLINE]
    for kernel, batch, length in (("layer.prefill", 2, 64), ("layer.decode_paged", 4, 256)):
        if kernel == "layer.prefill":
            tokens = batch * length
            got = cost.time_energy(tokens, batch * causal_pairs(length, length), 0, 0, batch)
        else:
            tokens = batch
            got = cost.time_energy(0, 0, batch, batch * length, 0)
        # The LM head runs over the sampled positions only: one per prompt prefilled, one per decode token.
        sampled = batch
        head_t, head_e = head.time_energy(2.0 * D.hidden * 64 * sampled,
                                          2.0 * D.hidden * 64 + 2.0 * (D.hidden + 64) * sampled)
        layer_t, layer_e = composed_layer(profile, kernel, batch, length)
        assert got == pytest.approx((2 * layer_t + head_t, 2 * layer_e + head_e), rel=1e-3), kernel
    with pytest.raises(TypeError, match="one step at a time"):  # arrays of steps: a clear refusal
        cost.time_energy(sp.np.array([1.0, 2.0]), sp.np.zeros(2), sp.np.zeros(2), sp.np.zeros(2), sp.np.ones(2))
    sources = device.parts.sources()
    assert sources["decode overhead"].startswith("calibrated:layer.decode_paged")
    assert "not measured" in sources["LM head"] and "composed from measured parts" in device.method


def test_without_parts_the_step_keeps_the_attention_roofline():
    device = from_profile(sp.profile(), "fake", memory_bytes=1e12)
    assert device.parts is None and StepCost.of(MODEL, device).composed is None
    # The rate is attention's (prefill.torch's 3e10), not the linear cases' (1e11) in the same profile.
    assert device.flop_per_s == pytest.approx(sp.TRUE_TIME["prefill.torch"][0], rel=0.1)
    plain = StepCost.of(MODEL, device)
    with_parts = StepCost.of(MODEL, dataclasses.replace(device, parts=from_parts(sp.profile(), "f", 1e12).parts))
    assert plain.time_energy(0, 0, 4, 1024, 0) != with_parts.time_energy(0, 0, 4, 1024, 0)


def test_a_composed_tensor_parallel_step_pays_its_all_reduces_on_both_paths():
    import dataclasses

    from bench.carbon.serving import allreduce_table
    from bench.carbon.serving.device import allreduce_s

    model = ModelSpec("m", layers=4, hidden=64, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=256,
                      context_tokens=4096)
    bare = from_parts(sp.profile(), "fake", memory_bytes=1e12)
    two = dataclasses.replace(bare, devices=2, allreduce=allreduce_table("h100_sxm", 2))
    with_comm, without = StepCost.of(model, two), StepCost.of(model, bare)
    for args in [(0.0, 0.0, 8.0, 800.0, 0.0), (300.0, 45150.0, 16.0, 4000.0, 2.0)]:
        (t, e), (t0, e0) = with_comm.time_energy(*args), without.time_energy(*args)
        comm_s = 2 * model.layers * allreduce_s(two, (args[0] + args[2]) * model.hidden * 2)
        assert comm_s > 0 and t - t0 == pytest.approx(comm_s) and e - e0 == pytest.approx(two.p0_w * comm_s)
        assert with_comm.scalar()(*args) == with_comm.time_energy(*args)
