"""Profiles from synthetic measured points with known coefficients: gathered, filtered by
quality, fitted, written, loaded back."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.profile import build as profiles
from bench.profile import store

REPO = Path(__file__).resolve().parents[2]
E_FLOP, E_BYTE, P0 = 0.4e-12, 50e-12, 120.0
RATE, BW, OVERHEAD = 4e14, 2.5e12, 6e-6


def point(kernel, batch, length, rng, quality="ok", **extra):
    phase = kernel.split(".")[0]
    heads, d = 32, 128
    if phase == "prefill":
        flops = 4.0 * batch * heads * d * length * length / 2
        nbytes = 2.0 * d * batch * (2 * heads * length + 2 * 8 * length)
        tokens = batch * length
    else:
        flops = 4.0 * batch * heads * d * length
        nbytes = 2.0 * 2 * batch * 8 * length * d
        tokens = batch
    t = (max(flops / RATE, nbytes / BW) + OVERHEAD) * (1 + 0.01 * rng.standard_normal())
    gpu_j = (E_FLOP * flops + E_BYTE * nbytes + P0 * t) * (1 + 0.01 * rng.standard_normal())
    key = f"{kernel}-{batch}-{length}-{quality}-{extra.get('clocks_sm_mhz_requested', '')}"
    return {"key": key, "created_utc": "2026-11-24T00:00:00+00:00", "kernel": kernel, "phase": phase,
            "impl": kernel.split(".")[1], "paged": False, "device": "cuda", "dtype": "bfloat16", "batch_size": batch,
            "heads": heads, "kv_heads": 8, "head_dim": d, "seq_len": length if phase == "prefill" else None,
            "context_len": length if phase == "decode" else None, "causal": True if phase == "prefill" else None,
            "flops_per_call": flops, "min_bytes_per_call": nbytes, "tokens_per_call": tokens, "time_per_call_s": t,
            "time_per_call_s_cv": 0.004, "gpu_energy_per_call_j": gpu_j, "gpu_method": "nvml_counter",
            "energy_per_call_j": gpu_j + 30.0 * t, "energy_per_call_j_cv": 0.005,
            "energy_method": "gpu=nvml_counter; cpu=model:process_cpu_time_x_tdp_per_core",
            "quality": quality, "env_device_name": "Fake H100", **extra}


@pytest.fixture
def points():
    rng = np.random.default_rng(1)
    rows = [point(k, b, n, rng) for k in ("prefill.triton", "prefill.torch") for b in (1, 4, 16) for n in (512, 2048, 8192)]
    rows += [point(k, b, n, rng) for k in ("decode.triton", "decode.torch") for b in (1, 8, 32, 128) for n in (1024, 16384)]
    rows += [point("decode.triton", 8, 4096, rng, quality="noisy"), point("decode.triton", 16, 4096, rng, quality="noisy"),
             point("prefill.triton", 2, 4096, rng, quality="throttled")]
    return pd.DataFrame(rows)


def test_build_recovers_the_energy_roofline_and_drops_bad_points(points):
    p = profiles.build(points, "fake-h100")
    assert p.meta["points_dropped"] == {"noisy": 2, "throttled": 1}
    assert p.meta["points_used"] == len(points) - 3
    roof = p.energy_roofline()
    for name, true in (("e_flop_j", E_FLOP), ("e_byte_j", E_BYTE), ("p0_w", P0)):
        lo, hi = roof.ci95[name]
        assert lo <= true <= hi, name
    assert roof.quality == "good"
    time_fit = p.time_roofline("decode.triton")
    assert time_fit.extra["bytes_per_s"] == pytest.approx(BW, rel=0.1)
    assert set(p.fits["batching"]) >= {"decode.torch L=1024 h=32/8 d=128", "prefill.triton N=2048 h=32/8 d=128"}
    assert (p.table["quality"] == "ok").all()
    measured, fitted = p.table["device_energy_per_call_j"], p.table["device_energy_per_call_j_fit"]
    assert np.allclose(fitted, measured, rtol=0.06)


def test_written_profile_loads_back(points, tmp_path):
    p = profiles.build(points, "fake-h100", source="synthetic")
    paths = store.write(p, tmp_path)
    names = {path.name for path in paths}
    assert {"fake-h100.csv", "fake-h100.json", "fake-h100.md", "fake-h100_batching.png",
            "fake-h100_energy_roofline.png"} <= names
    loaded = store.load("fake-h100", tmp_path)
    assert len(loaded.table) == len(p.table)
    assert loaded.energy_roofline().params == pytest.approx(p.energy_roofline().params)
    assert loaded.meta["source"] == "synthetic"
    md = (tmp_path / "fake-h100.md").read_text()
    assert "energy_roofline" in md and "nvml_counter" in md and "dropped by quality" in md


def test_missing_profile_names_what_exists(tmp_path):
    with pytest.raises(profiles.ProfileError, match="no profile 'nope'.*available: none"):
        store.load("nope", tmp_path)


def test_gather_reads_point_files_and_csvs_once_per_key(points, tmp_path):
    (tmp_path / "a" / "points").mkdir(parents=True)
    for row in points.head(5).to_dict("records"):
        (tmp_path / "a" / "points" / f"{row['key']}.json").write_text(json.dumps(row))
    points.to_csv(tmp_path / "b_points.csv", index=False)
    assert len(profiles.gather(str(tmp_path / "a"))) == 5
    assert len(profiles.gather(str(tmp_path / "*"))) == len(points)  # the 5 again in the csv, kept once
    with pytest.raises(profiles.ProfileError, match="no measured points"):
        profiles.gather(str(tmp_path / "none*"))


def test_points_without_a_quality_flag_get_one_from_their_cvs(points):
    legacy = points.drop(columns=["quality"])
    legacy.loc[0, "energy_per_call_j_cv"] = 0.2
    prepared = profiles.prepare(legacy)
    assert prepared.loc[0, "quality"] == "noisy" and prepared.loc[1, "quality"] == "ok"
    assert prepared.loc[0, "quality_source"].startswith("derived")


def test_frequency_points_give_an_energy_optimal_clock():
    rng = np.random.default_rng(2)
    rows = []
    for f in (810, 1005, 1200, 1395, 1590, 1785, 1980):
        row = point("decode.triton", 32, 4096, rng, clocks_sm_mhz_requested=float(f))
        power = 90 + 150 * (f / 1000) ** 2.2
        row["time_per_call_s"] = 1e-4 + 1e-4 / (f / 1000)
        row["gpu_energy_per_call_j"] = power * row["time_per_call_s"]
        rows.append(row)
    p = profiles.build(pd.DataFrame(rows), "fake")
    [(name, out)] = p.fits["frequency"].items()
    assert 810 <= out["energy_optimal_mhz_measured"] <= 1980
    assert out["power"].params["a"] == pytest.approx(2.2, rel=0.05)


def run_bench(*args):
    from tests.cli.runner import run_cli

    return run_cli("sweep=none", *args)


@pytest.mark.long
def test_fit_and_report_tasks_end_to_end(points, tmp_path):
    (tmp_path / "res" / "points").mkdir(parents=True)
    for row in points.to_dict("records"):
        (tmp_path / "res" / "points" / f"{row['key']}.json").write_text(json.dumps(row))
    out = run_bench("task=fit", f"results={tmp_path / 'res'}", "hardware=fake-h100", f"profiles_dir={tmp_path / 'prof'}")
    assert out.code == 0, out.stderr[-2000:]
    assert "profile fake-h100" in out.stdout and (tmp_path / "prof" / "fake-h100.csv").exists()
    rep = run_bench("task=report", "profile=fake-h100", f"profiles_dir={tmp_path / 'prof'}",
                    f"report_dir={tmp_path / 'rep'}", f"results_dir={tmp_path / 'res'}")
    assert rep.code == 0, rep.stderr[-2000:]
    assert (tmp_path / "rep" / "fake-h100.md").exists() and "# Energy profile" in rep.stdout
    bad = run_bench("task=fit", f"results={tmp_path / 'nothing'}")
    assert bad.code == 2 and "invalid results=" in bad.stderr
    missing = run_bench("task=report", "profile=nope", f"profiles_dir={tmp_path / 'prof'}")
    assert missing.code == 2 and "available: fake-h100" in missing.stderr


SHIPPED = "cpu-amd-epyc-2core"


def test_shipped_energy_roofline_predicts_held_out_shapes_within_its_cross_validated_error():
    from bench.profile import curves

    shipped = store.load(SHIPPED)
    reported = shipped.energy_roofline()
    assert reported is not None and "model:" in " ".join(shipped.meta["energy_methods"])  # labelled as modelled
    table = shipped.table
    rows = table[table["clock_mhz"].isna() & ~table["impl"].str.startswith("offload")].reset_index(drop=True)
    held = rows.index % 4 == 0
    fit = curves.energy_roofline(rows[~held])
    predicted = curves.predict_energy_j(fit, rows.loc[held, "flops_per_call"], rows.loc[held, "min_bytes_per_call"],
                                        rows.loc[held, "time_per_call_s"])
    measured = rows.loc[held, "device_energy_per_call_j"].to_numpy()
    errors = np.abs(predicted - measured) / measured
    assert held.sum() >= 5
    assert errors.max() <= reported.cv_rel_error_max


def test_offload_plot_draws_one_line_per_setting(monkeypatch):
    # Two stream settings (chunks=1, chunks=4) at the same batch sizes are two curves, not one
    # zig-zag through both.
    import types

    from bench.profile import plots

    figs = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figs.append(fig) or path)
    rows = [{"impl": "offload_stream", "kernel": "decode.offload_stream_torch", "length": 1024.0,
             "setting": f"chunks={c}", "batch_size": b, "host_energy_per_token_j": 1e-3 * c / b}
            for c in (1, 4) for b in (1, 4, 16)]
    plots.offload_plot(types.SimpleNamespace(table=pd.DataFrame(rows)), Path("unused.png"))
    lines = figs[0].axes[0].get_lines()
    assert len(lines) == 2
    assert all(list(line.get_xdata()) == [1, 4, 16] for line in lines)
    assert sorted(line.get_label() for line in lines) == ["decode.offload_stream_torch len=1024 chunks=1",
                                                          "decode.offload_stream_torch len=1024 chunks=4"]


@pytest.mark.long
def test_fitting_the_shipped_points_reproduces_the_shipped_profile(tmp_path):
    """`task=fit` on `results/cpu_2026-11-24` gives the shipped profile: measured values and every
    fit's quality exactly; fitted values to 1e-6, except the parameters of fits marked poor, which
    least-squares solvers may settle differently (5% between scipy versions here), to 10%."""
    import math

    out = run_bench("task=fit", f"results={REPO / 'results' / 'cpu_2026-11-24'}", f"hardware={SHIPPED}",
                    f"profiles_dir={tmp_path}")
    assert out.code == 0, out.stderr[-2000:]
    shipped, fitted = store.load(SHIPPED), store.load(SHIPPED, tmp_path)
    measured = ["kernel", "batch_size", "length", "time_per_call_s", "device_energy_per_call_j",
                "host_energy_per_call_j", "quality", "key"]
    pd.testing.assert_frame_equal(fitted.table[measured], shipped.table[measured])
    poor_time = [k for k, f in shipped.fits["time_roofline"].items() if f["quality"] == "poor"]
    loose = fitted.table["kernel"].isin(poor_time)
    for col in ("time_per_call_s_fit", "device_energy_per_call_j_fit"):
        rtol = np.where(loose & (col == "time_per_call_s_fit"), 0.1, 1e-6)
        a, b = fitted.table[col].to_numpy(float), shipped.table[col].to_numpy(float)
        assert np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= rtol * np.abs(b))), col

    def walk(a, b, where, rtol):
        if isinstance(b, dict):
            assert set(a) == set(b), where
            rtol = 0.1 if b.get("quality") == "poor" else rtol
            for k in b:
                walk(a[k], b[k], f"{where}.{k}", rtol)
        elif isinstance(b, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{i}]", rtol)
        elif isinstance(b, float) and not isinstance(b, bool):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=rtol, abs=1e-12), where
        else:
            assert a == b, where

    walk(fitted.fits, shipped.fits, "fits", 1e-6)
    assert fitted.meta["skipped_fits"] == shipped.meta["skipped_fits"]
    assert fitted.meta["points_dropped"] == shipped.meta["points_dropped"]


@pytest.mark.long
def test_a_corrupt_point_file_is_skipped_and_counted_not_a_traceback(points, tmp_path):
    from bench.measure.results import ResultsStore

    (tmp_path / "res" / "points").mkdir(parents=True)
    for row in points.to_dict("records"):
        (tmp_path / "res" / "points" / f"{row['key']}.json").write_text(json.dumps(row))
    broken = tmp_path / "res" / "points" / "deadbeef.json"
    broken.write_text('{"key": "deadbeef", "kernel": "prefill.tor')  # cut off mid-write
    (tmp_path / "res" / "points" / "list.json").write_text("[1, 2]")
    gathered = profiles.gather(str(tmp_path / "res"))
    assert len(gathered) == len(points) and len(gathered.attrs["unreadable_points"]) == 2
    profile = profiles.build(gathered, "fake")
    assert sorted(profile.meta["points_unreadable"]) == sorted([str(broken), str(broken.with_name("list.json"))])
    store_ = ResultsStore(tmp_path / "res")
    assert len(store_.rows()) == len(points) and not store_.has("deadbeef")  # measured again, not reused
    out = run_bench("task=fit", f"results={tmp_path / 'res'}", "hardware=fake-h100", f"profiles_dir={tmp_path / 'p'}")
    assert out.code == 0 and "skipped an unreadable point file" in out.stdout, out.stderr[-2000:]


def test_points_a_profile_cannot_use_are_skipped_and_counted_whatever_is_wrong_with_them(points, tmp_path):
    # A csv that is empty or not of points, a point without its kernel, one whose time is text or
    # negative: each skipped and named, the usable points gathered (never a KeyError or ValueError).
    good = points.head(4).to_dict("records")
    (tmp_path / "a" / "points").mkdir(parents=True)
    for row in good:
        (tmp_path / "a" / "points" / f"{row['key']}.json").write_text(json.dumps(row))
    for name, bad in {"nokernel": {k: v for k, v in good[0].items() if k != "kernel"} | {"key": "nokernel"},
                      "text": good[1] | {"key": "text", "time_per_call_s": "fast"},
                      "negative": good[2] | {"key": "negative", "time_per_call_s": -1.0},
                      "keyonly": {"key": "keyonly"}}.items():
        (tmp_path / "a" / "points" / f"{name}.json").write_text(json.dumps(bad))
    gathered = profiles.gather(str(tmp_path / "a"))
    assert sorted(gathered["key"]) == sorted(r["key"] for r in good) and len(gathered.attrs["unreadable_points"]) == 4
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "points.csv").write_text("")
    (tmp_path / "c_points.csv").write_text("when,value\n2022-01-01,1\n")
    with pytest.raises(profiles.ProfileError, match="no measured points.* 1 unreadable or unusable"):
        profiles.gather(str(tmp_path / "b"))
    with pytest.raises(profiles.ProfileError, match="no measured points.* 1 unreadable or unusable.*row 2"):
        profiles.gather(str(tmp_path / "c_points.csv"))
    pd.DataFrame(good).to_csv(tmp_path / "d_points.csv", index=False)
    assert len(profiles.gather(str(tmp_path / "d_points.csv"))) == 4  # a points csv: every row usable
