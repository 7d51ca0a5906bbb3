import math

import pandas as pd
import pytest

from bench.perf.table import compare, markdown


def test_compare_ratios_against_the_fastest_sdpa_backend_of_the_same_shape():
    base = {"phase": "decode", "paged": False, "batch_size": 8, "seq_len": 1, "context_len": 4096, "causal": True}
    rows = pd.DataFrame([
        {**base, "kernel": "decode.triton", "impl": "triton", "time_ms": 0.5, "tflop_per_s": 1.0, "gb_per_s": 2400.0},
        {**base, "kernel": "decode.torch", "impl": "torch", "time_ms": 1.0, "tflop_per_s": 0.5, "gb_per_s": 1200.0},
        {**base, "paged": True, "kernel": "decode.triton_paged", "impl": "triton", "time_ms": 0.6, "tflop_per_s": 1.0,
         "gb_per_s": 2000.0},
    ])
    out = compare(rows, {"copy_gb_per_s": 3000.0, "read_gb_per_s": 4000.0, "matmul_tflop_per_s": 800.0})
    assert out["speedup_vs_best_sdpa"].tolist()[:2] == [2.0, 1.0]
    assert math.isnan(out["speedup_vs_best_sdpa"].iloc[2])  # no SDPA row with a paged layout
    assert out["pct_of_copy_bw"].tolist() == pytest.approx([80.0, 40.0, 2000 / 30])
    assert out["pct_of_read_bw"].tolist() == pytest.approx([60.0, 30.0, 50.0])
    assert out["pct_of_matmul"].isna().all()


def test_markdown_table():
    text = markdown(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x", "y"]}))
    assert text.splitlines() == ["| a | b |", "| --- | --- |", "| 1.235 | x |", "|  | y |"]


def test_split_choice_reports_the_tuners_new_entry_beside_the_heuristic():
    import torch

    from bench.perf.table import split_choice
    from kernels import Shape, triton_decode

    shape = Shape(batch_size=4, heads=32, kv_heads=8, head_dim=128, context_len=1000, page_size=16)
    cpu = torch.device("cpu")
    heuristic = triton_decode.plan_splits(4, 8, 1000, cpu)[0]
    out = split_choice(shape, False, {"old"}, {"old": 2, "new": 6}, cpu)
    assert out == {"splits_chosen": 6.0, "splits_heuristic": float(heuristic)}
    paged = split_choice(shape, True, {"old"}, {"old": 2}, cpu)  # nothing new: the shape was tuned before
    assert math.isnan(paged["splits_chosen"])
    assert paged["splits_heuristic"] == triton_decode.plan_splits(4, 8, 1008, cpu)[0]  # 63 pages of 16


def _timed(kernel, impl, phase, time_ms, **shape):
    return {"kernel": kernel, "impl": impl, "phase": phase, "paged": False, "head_dim": 128, "time_ms": time_ms, **shape}


def test_bars_report_each_triton_kernel_at_its_worst_point():
    from bench.perf.table import bars

    p1, p2 = dict(batch_size=4, seq_len=4096, causal=False), dict(batch_size=1, seq_len=16384, causal=True)
    d_small, d_big = dict(batch_size=1, context_len=4096), dict(batch_size=64, context_len=4096)
    rows = pd.DataFrame([
        _timed("prefill.triton", "triton", "prefill", 1.0, **p1), _timed("prefill.triton", "triton", "prefill", 2.0, **p2),
        _timed("prefill.torch_flash", "torch_flash", "prefill", 1.5, **p1),
        _timed("prefill.torch_flash", "torch_flash", "prefill", 2.2, **p2),
        _timed("prefill.torch_cudnn", "torch_cudnn", "prefill", 0.9, **p1),
        _timed("prefill.torch_cudnn", "torch_cudnn", "prefill", 1.6, **p2),  # 1.6 / 2.0 = 0.8 < 0.85
        {**_timed("prefill.triton", "triton", "prefill", 0.1, **p1), "head_dim": 64},  # another head dim: ignored
        _timed("prefill.triton_tma", "triton_tma", "prefill", float("nan"), **p1),  # skipped: not measured
        {**_timed("decode.triton", "triton", "decode", 0.1, **d_small), "speedup_vs_best_sdpa": 2.0, "pct_of_copy_bw": 40.0},
        {**_timed("decode.triton", "triton", "decode", 0.4, **d_big), "speedup_vs_best_sdpa": 1.0, "pct_of_copy_bw": 90.0},
    ])
    out = bars(rows).set_index(["kernel", "target"])
    flash = out.loc[("prefill.triton", ">= 1.00x SDPA flash")]
    assert flash["worst"] == pytest.approx(1.1) and flash["met"] and "seq_len=16384" in flash["at"]
    cudnn = out.loc[("prefill.triton", ">= 0.85x SDPA cuDNN")]
    assert cudnn["worst"] == pytest.approx(0.8) and not cudnn["met"]
    assert not out.loc[("prefill.triton_tma", ">= 1.00x SDPA flash")]["met"]  # nothing measured is not met
    assert out.loc[("prefill.triton_tma", ">= 1.00x SDPA flash")]["at"] == "not measured"
    sdpa = out.loc[("decode.triton", "> 1.00x SDPA decode, every point")]
    assert sdpa["worst"] == 1.0 and not sdpa["met"] and "batch_size=64" in sdpa["at"]  # a tie is not faster
    bandwidth = out.xs("decode.triton").filter(like="copy bandwidth", axis=0).iloc[0]
    assert bandwidth["worst"] == 90.0 and bandwidth["met"]  # the batch-1 point does not fill the GPU


def test_the_table_times_the_contenders_only():
    from bench.perf.table import case_names

    prefill, decode = case_names("prefill"), case_names("decode")
    assert {"prefill.triton", "prefill.triton_tma", "prefill.torch_flash", "prefill.torch_cudnn"} <= set(prefill)
    assert "prefill.torch_math" not in prefill
    assert {"decode.triton", "decode.triton_paged", "decode.triton_tma", "decode.torch", "decode.torch_paged"} == set(decode)


def test_main_keeps_rows_as_it_goes_and_writes_the_targets(tmp_path, monkeypatch):
    import sys

    import torch

    import bench.perf.table as perf

    seen = []

    def fake_time_case(name, shape, dtype):  # the GPU timing is the boundary faked here
        partial = tmp_path / "kernels_partial.csv"
        seen.append(len(pd.read_csv(partial)) if partial.exists() else 0)
        case = perf.REGISTRY.get(name)
        ms = 1.0 if case.impl.startswith("triton") else 1.2
        return {"kernel": name, "phase": case.phase, "impl": case.impl, "paged": case.paged, **case.shape_fields(shape),
                "time_ms": ms, "tflop_per_s": case.flops(shape) / ms / 1e9, "gb_per_s": case.min_bytes(shape, dtype) / ms / 1e6}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Fake GPU")
    monkeypatch.setattr(perf, "ceilings", lambda: {"copy_gb_per_s": 2400.0, "read_gb_per_s": 3000.0,
                                                   "matmul_tflop_per_s": 700.0})
    monkeypatch.setattr(perf, "_time_case", fake_time_case)
    monkeypatch.setattr(sys, "argv", ["perf", "--out", str(tmp_path), "--seq-lens", "4096", "--batches", "32",
                                      "--contexts", "4096", "--head-dims", "128"])
    perf.main()
    table = pd.read_csv(tmp_path / "kernels.csv")
    n_prefill, n_decode = 2 * len(perf.case_names("prefill")), len(perf.case_names("decode"))
    assert len(table) == n_prefill + n_decode and (table["device"] == "Fake GPU").all()
    # Before each shape, the rows of every earlier shape were already on disk.
    assert seen[:: len(perf.case_names("prefill"))][:3] == [0, len(perf.case_names("prefill")), n_prefill]
    assert not (tmp_path / "kernels_partial.csv").exists()
    text = (tmp_path / "kernels.md").read_text()
    assert "## Targets" in text and "| prefill.triton | >= 1.00x SDPA flash | 1.2 |" in text
