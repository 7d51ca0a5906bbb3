"""The composition check on a fake device whose layer costs its parts plus a known overhead: the
composed prediction meets the measurement, the overhead comes back, the tables say their sources;
and energies of two methods are never composed into one number."""
import pytest

from bench.profile import build, compose, store
from bench.profile.compose import TARGET_REL_ERROR, summary
from tests.profile import synthetic_parts as sp


def test_a_layer_composed_from_its_parts_matches_and_the_overhead_comes_back():
    p = sp.profile()
    table = p.composition
    assert set(table["kernel"]) == {"layer.prefill", "layer.decode", "layer.decode_paged"} and len(table) == 12
    # 0.5% noise per point: out of sample (a left-out end point is extrapolated from three) the
    # errors stay within ten times that, a third of the target.
    bound = 10 * sp.NOISE
    assert table["time_rel_error"].abs().max() < bound and table["energy_rel_error"].abs().max() < bound
    assert (table["overhead_time_s"] > 0).all() and (table["parts_time_s"] < table["measured_time_s"]).all()
    for kernel, fits in p.fits["layer_overhead"].items():
        assert fits["time"].params["c0_s"] == pytest.approx(sp.OVERHEAD_T[0], rel=0.2), kernel
        assert fits["energy"].params["e0_j"] == pytest.approx(sp.OVERHEAD_E[0], rel=0.2), kernel
    linear = p.fits["linear_time_roofline"]["linear.gate_up"]
    assert linear.extra["flop_per_s"] == pytest.approx(sp.TRUE_TIME["linear"][0], rel=0.05)
    assert summary(table).set_index("kernel").loc["all", f"within {TARGET_REL_ERROR:.0%}"] == "yes"
    # Parts measured at the layer's shape are taken as measured; the prefill projections, measured
    # at 64 tokens only, come from their roofline at 256.
    sources = table.set_index("kernel").loc["layer.decode_paged", "sources"].iloc[0]
    assert "gemm.qkv.decode: measured:gemm.qkv.decode" in sources
    assert "decode.torch_paged: measured:decode.torch_paged" in sources and "calibrated:layer.decode_paged" in sources
    long = table[(table["kernel"] == "layer.prefill") & (table["seq_len"] == 256)]
    assert "profile:fake-cpu linear_time_roofline[linear.qkv]" in long["sources"].iloc[0]
    assert (long["parts_measured"] == 1).all()  # the attention alone was measured there
    # Every part from its fit (as a serving step composes), the errors stay small here too: the
    # fake device's parts are exactly their rooflines.
    assert table["time_rel_error_fit_parts"].abs().max() < bound
    # The planner's device-wide energy roofline stays attention's alone.
    assert p.fits["energy_roofline"].n_points == 12


def test_the_composition_table_is_written_beside_the_profile_and_loads_back(tmp_path, monkeypatch):
    from bench.profile import plots

    monkeypatch.setattr(plots, "render", lambda profile, out: [])  # figures are tested with profiles
    paths = store.write(sp.profile(), tmp_path)
    assert tmp_path / "fake-cpu_composition.md" in paths
    md = (tmp_path / "fake-cpu_composition.md").read_text()
    assert "model:process_cpu_time_x_tdp_per_core" in md and "modelled, not metered" in md and "15%" in md
    assert "leave one out" in md and "Fake CPU" in md and "torch 2.13.0" in md
    loaded = store.load("fake-cpu", tmp_path)
    assert len(loaded.composition) == 12 and loaded.op_of("gemm.o.decode") == "linear.o"


def test_energies_of_two_methods_are_not_composed_into_one_number():
    df = build.prepare(sp.points())
    df.loc[df["op"] == "layer", "device_energy_method"] = "cpu=rapl"  # the layers metered, the parts modelled
    overheads, table, skipped = compose.check(df, sp.profile().fits, "fake-cpu")
    assert table["composed_energy_j"].isna().all() and table["time_rel_error"].notna().all()
    assert any("2 energy methods" in s for s in skipped)
    assert "energy" not in overheads["layer.prefill"] and "time" in overheads["layer.prefill"]


@pytest.mark.parametrize("kv", [sp.OVERHEAD_KV, (0.0, 0.0)], ids=["kv term", "no kv term"])
def test_the_decode_overhead_keeps_a_kv_term_only_where_the_layer_costs_one(kv):
    # The parts' points and fits are the same with or without the term (it is the layers'): one
    # profile's fits serve both checks.
    overheads, table, _ = compose.check(build.prepare(sp.points((1, 4, 16), kv)),
                                        sp.profile_with_kv(sp.OVERHEAD_KV).fits, "fake-cpu-kv")
    # Out of sample (nested: the form too is chosen without the point) within ten times the noise.
    assert table["time_rel_error"].abs().max() < 10 * sp.NOISE and table["energy_rel_error"].abs().max() < 10 * sp.NOISE
    for kernel in ("layer.decode", "layer.decode_paged"):
        for what, name, true in (("time", "c_kv_s", kv[0]), ("energy", "e_kv_j", kv[1])):
            fit = overheads[kernel][what]
            if true:
                assert fit.params[name] == pytest.approx(true, rel=0.2), (kernel, what)
                lo, hi = fit.ci95[name]
                assert lo < true < hi and lo > 0, (kernel, what)  # its interval holds the truth, not zero
            else:  # absent: not kept, or kept with an interval that holds zero
                assert name not in fit.params or fit.ci95[name][0] < 0 < fit.ci95[name][1], (kernel, what)
    # Prefill reads no KV cache: its overhead never has the term.
    assert "c_kv_s" not in overheads["layer.prefill"]["time"].params


def test_the_kv_term_is_needed_when_the_layer_has_one():
    """With the KV cost in the layers, the form without it predicts left-out points worse than the
    target allows at the long contexts: the check would not meet it by c0 and c_elem alone."""
    scores = sp.profile_with_kv(sp.OVERHEAD_KV).fits["layer_overhead"]["layer.decode_paged"]["time"].extra["form_loo_rel_error_rms"]
    assert scores["c0+elem+kv"] < 10 * sp.NOISE < scores["c0+elem"]


def test_a_part_between_measured_batches_is_interpolated_and_says_so():
    df = build.prepare(sp.points((1, 4, 16)))
    df = df[~((df["kernel"] == "gemm.o.decode") & (df["batch_size"] == 4))]
    got, how = compose.measured_point(df, "gemm.o.decode", sp.shape(4, 1, "decode"), sp.DTYPE)
    lo, hi = (df[(df["kernel"] == "gemm.o.decode") & (df["batch_size"] == b)].iloc[0] for b in (2, 16))
    assert got["time_per_call_s"] == pytest.approx(lo["time_per_call_s"] + (hi["time_per_call_s"] - lo["time_per_call_s"])
                                                   * (4 - 2) / (16 - 2))
    assert how == "measured:gemm.o.decode interpolated between batch 2 and 16"
    exact, how = compose.measured_point(df, "gemm.o.decode", sp.shape(16, 1, "decode"), sp.DTYPE)
    assert how == "measured:gemm.o.decode" and exact["time_per_call_s"] == pytest.approx(hi["time_per_call_s"])
    # Beyond the measured batches nothing is extrapolated (the fit is used instead).
    assert compose.measured_point(df, "gemm.o.decode", sp.shape(32, 1, "decode"), sp.DTYPE) == (None, "")
