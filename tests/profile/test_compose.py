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
    sources = table.set_index("kernel").loc["layer.decode_paged", "sources"].iloc[0]
    assert "profile:fake-cpu linear_time_roofline[linear.qkv]" in sources
    assert "time_roofline[decode.torch_paged]" in sources and "calibrated:layer.decode_paged" in sources
    # The planner's device-wide energy roofline stays attention's alone.
    assert p.fits["energy_roofline"].n_points == 12


def test_the_composition_table_is_written_beside_the_profile_and_loads_back(tmp_path, monkeypatch):
    monkeypatch.setattr(store.plots, "render", lambda profile, out: [])  # figures are tested with profiles
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
