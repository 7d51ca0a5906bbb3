"""Calibrated datasheet models and their validation against measured servers: the step model on
arrays equals it on floats, a synthetic measurement file made from a known device is recovered by the
calibration, a transfer scales power by TDP, and the validation table and SLO choice say what the
numbers say."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from bench.carbon import serving
from bench.carbon.serving import device as devices
from bench.carbon.validation import calibrate, measurements, replay, report

MODEL = serving.PRESETS["llama3_8b"]
# A small backlog: few requests and short outputs keep each replay to a few thousand steps.
CONF = measurements.ValidateConf(num_requests=96, prompt_mean_tokens=200.0)
# On the H100's power anchors: at 220 W static, energy per flop and per streamed byte are what its two
# measured kernels say (about 0.80 pJ and 118 pJ), as a calibration of the H100 has them.
KNOWN = calibrate.anchored({"overhead_s": 2.5e-3, "kv_bw_fraction": 0.5, "p_static_w": 220.0, "seq_s": 2e-5,
                            "e_seq_mj": 10.0}, calibrate.anchors("h100_sxm"))


def known_device(tp: int = 1) -> serving.DeviceModel:
    return devices.physical("h100_sxm", KNOWN, 0.71, 0.92, "known", tp)


def synthetic_rows(batches=(4, 12, 32, 64), output=60.0) -> tuple[pd.DataFrame, list[replay.Schedule]]:
    """A measurement file as the known device would have produced it (the replay's own predictions)."""
    rows = pd.DataFrame({"max_num_seqs": list(batches), "avg_output_len": output, "num_gpus": 1})
    scheds = replay.schedules(MODEL, known_device(), "h100_sxm", rows, CONF)
    preds = calibrate.predictions(MODEL, replay.replay_device(known_device(), "h100_sxm", CONF), scheds)
    rows["energy_per_token_j"] = [p.energy_per_token_j for p in preds]
    rows["p90_itl_ms"] = [p.p90_itl_s * 1e3 for p in preds]
    rows["avg_batch_size"] = [p.avg_batch for p in preds]
    rows["avg_power_w"] = [p.power_w for p in preds]
    return rows, scheds


def test_step_cost_on_arrays_equals_it_on_floats_split_and_capped():
    capped = dataclasses.replace(known_device(), power_cap_w=400.0)
    cost = serving.StepCost.of(MODEL, capped)
    work = np.array([[0, 0, 8, 4000, 0], [2000, 2e6, 64, 50000, 4], [8000, 3.2e7, 256, 2e5, 30]], float)
    t, e = cost.time_energy(*work.T)
    for i, w in enumerate(work):
        ti, ei = cost.time_energy(*map(float, w))
        assert ti == pytest.approx(t[i], rel=1e-12) and ei == pytest.approx(e[i], rel=1e-12)
    assert (e / t <= 400.0 * (1 + 1e-9)).all() and (e[2] / t[2]) == pytest.approx(400.0)  # the big step is capped


def test_the_plain_datasheet_model_keeps_its_one_roofline():
    d = serving.datasheet("h100_sxm", calibrated=False)
    assert d.method == "model:datasheet" and d.kv_bytes_per_s == 0.0 and d.overhead_s == 0.0
    cost = serving.StepCost.of(MODEL, d)
    t, _ = cost.time_energy(0.0, 0.0, 8.0, 8000.0, 0.0)
    # A decode step streams the layers and the LM head once (not the input embedding table) and the KV cache.
    streamed = (MODEL.linear_params + MODEL.vocab * MODEL.hidden) * 2
    assert t == pytest.approx((streamed + MODEL.kv_bytes_per_token * 8008) / 3.35e12)


@pytest.mark.parametrize("with_anchors", [True, False])
def test_a_synthetic_measurement_file_is_recovered_by_the_calibration(with_anchors, monkeypatch):
    rows, scheds = synthetic_rows()
    if not with_anchors:  # a GPU type this project has no kernel power for: all seven parameters fitted
        monkeypatch.setattr(calibrate, "anchors", lambda gpu: None)
    cal = calibrate.fit(MODEL, "h100_sxm", rows, scheds, "synthetic")
    assert cal.anchored == with_anchors
    assert cal.residuals[["energy_rel_error", "p90_itl_rel_error"]].abs().max().max() < 0.01
    for name in ("overhead_s", "kv_bw_fraction", "p_static_w", "seq_s", "e_seq_mj"):
        assert cal.params[name] == pytest.approx(KNOWN[name], rel=0.1), name
    assert cal.label == "model:datasheet+calibrated:synthetic"


def test_anchored_energies_reproduce_both_measured_kernels_at_any_static_power():
    anchor = calibrate.anchors("h100_sxm")
    assert anchor is not None and calibrate.anchors("l4") is None
    for p0 in (0.0, 150.0, 300.0, 0.95 * calibrate.p_static_max_w(anchor)):
        p = calibrate.anchored({"p_static_w": p0}, anchor)
        assert p["e_flop_pj"] >= 0 and p["e_byte_pj"] >= 0
        for _, k in anchor.iterrows():  # W = W + pJ x TFLOP/s + pJ x TB/s
            model_w = p0 + p["e_flop_pj"] * k["tflop_per_s"] + p["e_byte_pj"] * k["gb_per_s"] * 1e-3
            assert model_w == pytest.approx(k["power_w"], rel=1e-9)
    # more static power leaves less to the work: both energies fall as it rises
    low, high = (calibrate.anchored({"p_static_w": w}, anchor) for w in (100.0, 300.0))
    assert high["e_flop_pj"] < low["e_flop_pj"] and high["e_byte_pj"] < low["e_byte_pj"]


def test_a_transfer_keeps_overhead_and_scales_power_by_tdp():
    params = dict(KNOWN)
    moved = devices.transfer(params, "h100_sxm", "b200")
    assert moved["overhead_s"] == KNOWN["overhead_s"] and moved["kv_bw_fraction"] == KNOWN["kv_bw_fraction"]
    assert moved["p_static_w"] == pytest.approx(220.0 * 1000 / 700)
    # power at full rate scales with TDP: e_flop x peak rate
    assert moved["e_flop_pj"] * 2250 == pytest.approx(KNOWN["e_flop_pj"] * 989 * 1000 / 700)
    # each request's work takes as long and draws power scaled by TDP
    assert moved["seq_s"] == KNOWN["seq_s"] and moved["e_seq_mj"] == pytest.approx(10.0 * 1000 / 700)
    assert "e_kv_byte_pj" not in moved  # a KV byte stays a streamed byte


def test_a_sampled_position_adds_its_time_and_energy_and_a_kv_byte_costs_a_streamed_byte():
    dev = known_device()
    assert dev.e_kv_byte_j == 0.0 and dev.seq_s == 2e-5 and dev.e_seq_j == pytest.approx(0.01)  # 0: a streamed byte's
    bare = dataclasses.replace(dev, seq_s=0.0, e_seq_j=0.0)
    work = (512.0, 512 * 513 / 2, 24.0, 24 * 900.0, 2.0)  # two prompts prefilled, 24 decodes: 26 sampled
    (t, e), (t0, e0) = (serving.StepCost.of(MODEL, d).time_energy(*work) for d in (dev, bare))
    assert t - t0 == pytest.approx(26 * 2e-5) and e - e0 == pytest.approx(26 * (0.01 + dev.p0_w * 2e-5))
    # Per request and per replica, whatever its GPUs (device.physical says why).
    pair = known_device(tp=2)
    assert pair.seq_s == dev.seq_s and pair.e_seq_j == dev.e_seq_j


def test_a_calibration_from_before_the_per_sequence_terms_keeps_its_kv_energy():
    old = {k: v for k, v in KNOWN.items() if k not in ("seq_s", "e_seq_mj")} | {"e_kv_byte_pj": 300.0}
    dev = devices.physical("h100_sxm", old, 0.71, 0.92, "old", 1)
    assert dev.e_kv_byte_j == pytest.approx(300e-12) and dev.seq_s == 0.0 and dev.e_seq_j == 0.0
    assert devices.transfer(old, "h100_sxm", "b200")["e_kv_byte_pj"] == pytest.approx(
        300.0 * 1000 / 700 * 3350 / 8000)


def test_the_shipped_h100_calibration_is_the_default_and_labelled():
    h100 = serving.datasheet("h100_sxm")
    assert h100.method.startswith("model:datasheet+calibrated:") and "transfer" not in h100.method
    assert h100.power_cap_w == 700.0 and h100.kv_bytes_per_s > 0 and h100.overhead_s > 0
    # The shipped file is of the current model: its parameters are exactly those a calibration fits, a
    # KV byte at a streamed byte's energy, per-sequence terms present (a stale file would run the old model).
    assert set(devices.calibration("h100_sxm")["params"]) == set(devices.PHYSICAL)
    assert h100.e_kv_byte_j == 0.0 and h100.seq_s > 0 and h100.e_seq_j > 0
    b200 = serving.datasheet("b200", 2)
    assert "transfer from h100_sxm" in b200.method and b200.power_cap_w == 2000.0 and b200.devices == 2


def test_the_validation_table_and_the_slo_choice(tmp_path):
    rows, _ = synthetic_rows(batches=(4, 32))
    rows["model_id"], rows["gpu_model"] = "synthetic", "H100"
    path = tmp_path / "m.csv"
    rows.to_csv(path, index=False)
    conf = dataclasses.replace(CONF, measurements=str(path), model="llama3_8b", gpu="h100_sxm")
    v = report.validate(conf)
    assert list(v.table.columns[:7]) == list(report.COLUMNS)
    assert v.method.startswith("model:datasheet+calibrated:")
    slow = float(v.table.measured_p90_itl_s.max())
    t = v.table
    assert report.choice(t, slow * 1.01, "measured") == 32  # less energy per token at the larger batch
    assert report.choice(t, float(t.measured_p90_itl_s.min()) * 0.5, "measured") is None
    assert "max batch 32 (measured)" in report.markdown(v, [slow * 1.01])


def test_the_replay_and_the_planner_take_one_gpu_memory_the_one_the_driver_reports():
    # An H100 80GB reports 81,559 MiB (nvidia-smi): not 80e9 bytes, not 80 GiB.
    assert devices.memory_bytes("h100_sxm") == 81559 * 2 ** 20
    for gpu in ("h100_sxm", "l4"):
        assert serving.datasheet(gpu).memory_bytes == devices.memory_bytes(gpu)
        # vLLM's share less the runtime's reserve per GPU (larger on a tensor-parallel replica)
        assert replay.serving_memory_bytes(gpu, 1, CONF) == pytest.approx(0.9 * devices.memory_bytes(gpu) - 2.18 * 2 ** 30)
        assert replay.serving_memory_bytes(gpu, 2, CONF) == pytest.approx(2 * (0.9 * devices.memory_bytes(gpu)
                                                                                - 3.97 * 2 ** 30))


def test_vllms_memory_accounting_reproduces_its_own_published_profile():
    # vllm-project/vllm PR #10511: Llama-3-8B on one H100 at 0.9, 8,192 tokens a step, 256 requests:
    # activation peak 1.26 GiB at tensor parallel 1 and 2 alike. The activation estimate is structural,
    # an independent check; the runtime reserve (2.18 GiB) is that profile's remainder, so its 53.29 GiB
    # of KV cache follows by construction and is held only as the account's arithmetic.
    m = serving.PRESETS["llama3_8b"]
    act = replay.activation_bytes(m, 1, 8192, 256)
    assert act / 2 ** 30 == pytest.approx(1.26, rel=0.05)
    assert replay.activation_bytes(m, 2, 8192, 256) == act  # not split across the replica
    assert m.weight_bytes / 2 ** 30 == pytest.approx(14.96, rel=0.005)
    kv = replay.serving_memory_bytes("h100_sxm", 1, CONF, m, 256) - m.weight_bytes
    assert kv / 2 ** 30 == pytest.approx(53.29, rel=0.01)
    # More requests' logits leave less.
    assert replay.activation_bytes(m, 1, 8192, 768) > act


def test_a_model_near_its_memory_limit_preempts_where_weights_alone_would_not():
    # Qwen3-32B on one H100: 61 GiB of weights leave about 7 GiB of KV cache once the runtime and the
    # activation peak are reserved; 32 requests of ~900 tokens need more, so the replay preempts
    # (ML.ENERGY measured a mean batch of 29.3 at max_num_seqs 32). Without the runtime's reserve it fits them all.
    m = serving.PRESETS["qwen3_32b"]
    row = pd.Series({"max_num_seqs": 32, "avg_output_len": 630.0})
    with_reserve = replay.schedule(m, serving.datasheet("h100_sxm"), row, CONF, "h100_sxm")
    bare = dataclasses.replace(CONF, runtime_reserve_gib=0.0)
    without = replay.schedule(m, serving.datasheet("h100_sxm"), row, bare, "h100_sxm")
    assert with_reserve.preemptions > 0 and without.preemptions == 0
    a, b = with_reserve.window
    assert (with_reserve.tokens[a:b] < 32).any()


def test_the_request_count_follows_the_measured_models_own_sweep():
    # ML.ENERGY's sweeps repeat the 1,024 requests at some points, per model, GPU type and GPU count.
    llama, qwen = "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-8B"
    assert [measurements.default_requests(b, llama, "H100") for b in (192, 256, 768)] == [1024, 2048, 3072]
    assert [measurements.default_requests(b, qwen, "H100") for b in (192, 256, 512)] == [1024, 1024, 1024]
    assert [measurements.default_requests(b, qwen, "B200") for b in (128, 512, 1024, 2048)] == [1024, 2048, 4096, 6144]
    assert measurements.default_requests(512, "meta-llama/Llama-3.1-70B-Instruct", "H100", 4) == 2048
    assert measurements.default_requests(512, "meta-llama/Llama-3.1-70B-Instruct", "H100", 2) == 1024  # not swept
    assert measurements.default_requests(512) == 1024  # no model_id: the benchmark's default
    # GPU names match whole ("GB200" is not "B200"), and the table is of the lm-arena-chat task only.
    assert measurements.default_requests(1024, qwen, "GB200") == 1024
    assert measurements.default_requests(1024, qwen, " b200 ", task="lm-arena-chat") == 4096
    assert measurements.default_requests(1024, qwen, "B200", task="gpqa") == 1024
    # A row with an empty gpu_model cell is replayed as of the GPU named: Llama-3.1-8B's H100 sweep
    # repeated its requests twice at 256.
    row = pd.Series({"max_num_seqs": 256, "avg_output_len": 20.0, "model_id": llama, "gpu_model": np.nan})
    fast = dataclasses.replace(CONF, num_requests=0)
    assert replay.schedule(serving.PRESETS["llama3_1_8b"], serving.datasheet("h100_sxm"), row, fast,
                           "h100_sxm").requests == 2048


def test_unusable_power_anchors_are_refused_in_one_line(tmp_path, monkeypatch):
    good = pd.read_csv(calibrate.ANCHORS)
    twice = tmp_path / "twice.csv"
    pd.concat([good, good[good["kind"] == "stream"]]).to_csv(twice, index=False)
    monkeypatch.setattr(calibrate, "ANCHORS", twice)
    with pytest.raises(ValueError, match="more than one anchor"):
        calibrate.anchors("h100_sxm")
    swapped = tmp_path / "swapped.csv"  # a compute kernel drawing less than the stream one: a negative e_flop
    bad = good.copy()
    bad.loc[bad["kind"] == "compute", "power_w"] = 100.0
    bad.to_csv(swapped, index=False)
    monkeypatch.setattr(calibrate, "ANCHORS", swapped)
    with pytest.raises(ValueError, match="no static power"):
        calibrate.p_static_max_w(calibrate.anchors("h100_sxm"))


def test_in_sample_means_the_rows_the_committed_calibration_was_fitted_on():
    shipped = dataclasses.replace(CONF, measurements="anywhere/mlenergy_v3_llama31_8b_h100.csv",
                                  model="meta-llama/Llama-3.1-8B-Instruct", gpu="h100_sxm")
    assert report.calibrated_on(shipped, 1)  # the same file, model (any of its names), GPU type and count
    assert not report.calibrated_on(shipped, 4)  # that file's rows at another GPU count
    assert not report.calibrated_on(dataclasses.replace(shipped, model="qwen3_8b"), 1)  # another model
    assert not report.calibrated_on(dataclasses.replace(shipped, gpu="b200"), 1)  # taken by transfer
    assert not report.calibrated_on(dataclasses.replace(shipped, measurements="other.csv"), 1)
    assert not report.calibrated_on(dataclasses.replace(shipped, calibration="none"), 1)  # the plain datasheet model


def test_a_batch_as_large_as_the_backlog_is_said_not_comparable(tmp_path):
    # 96 requests at max batch 96: ML.ENERGY's window (from the batch's last first token to all but
    # batch + 1 finished) does not exist in the replay; at max batch 4 it does.
    rows, scheds = synthetic_rows(batches=(4, 96))
    assert [s.steady for s in scheds] == [True, False]
    rows["model_id"], rows["gpu_model"] = "synthetic", "H100"
    path = tmp_path / "m.csv"
    rows.to_csv(path, index=False)
    v = report.validate(dataclasses.replace(CONF, measurements=str(path), model="llama3_8b", gpu="h100_sxm"))
    assert v.table["steady_state_replayed"].tolist() == [True, False]
    md = report.markdown(v, [0.05])
    assert "**not comparable** at max batch 96:" in md and "at max batch 4," not in md
    # Left out of the worst errors and the SLO choices: only max batch 4 is compared.
    t = v.table
    worst = float(t.loc[0, "energy_rel_error"])
    assert f"energy per token {abs(worst):.1%}," in md
    assert report.choice(t, 1e9, "measured") == 4 and report.choice(t, 1e9, "predicted") == 4


def test_the_plan_report_does_not_replay_a_file_on_a_gpu_it_took_from_a_measured_profile(tmp_path, monkeypatch):
    # The file's rows are not checked against what vLLM could run there either (`validate_plan`): the
    # replay must not run, and the section says why.
    path = tmp_path / "m.csv"
    path.write_text("max_num_seqs,avg_batch_size,avg_output_len,energy_per_token_j,p90_itl_ms,gpu_model\n"
                    "8,7.9,400,0.45,7.7,H100\n3072,3000,400,0.05,90,H100\n")

    def no_replay(*a, **k):
        raise AssertionError("replayed")

    monkeypatch.setattr(report, "validate", no_replay)
    lines = report.plan_section(str(path), "qwen3_32b", ["h100_sxm", "l4"], 0.05, measured=["h100_sxm"])
    assert "- h100_sxm: the plan used a measured profile, not the datasheet model this file validates" in lines
    with pytest.raises(AssertionError, match="replayed"):  # without the profile it is replayed
        report.plan_section(str(path), "qwen3_32b", ["h100_sxm", "l4"], 0.05, measured=[])


def test_without_a_comparable_row_nothing_is_chosen_and_choices_keep_to_one_gpu_count(tmp_path):
    # No steady state anywhere: no worst error ("nan%") and no "same" between two nones.
    rows, _ = synthetic_rows(batches=(96,))
    rows["model_id"], rows["gpu_model"] = "synthetic", "H100"
    path = tmp_path / "m.csv"
    rows.to_csv(path, index=False)
    md = report.markdown(report.validate(dataclasses.replace(CONF, measurements=str(path), model="llama3_8b",
                                                             gpu="h100_sxm")), [0.05])
    assert "nan" not in md and "worst |error|: none" in md and "- no comparable row: no max batch is chosen" in md
    # Servers of one and of two GPUs in one file: each count's max batch is chosen among its own rows (the
    # two-GPU 64 has the least energy of all, yet the one-GPU choice is 32).
    t = pd.DataFrame({"max_num_seqs": [8, 32, 8, 64], "num_gpus": [1, 1, 2, 2],
                      "measured_energy_per_token_j": [0.4, 0.2, 0.3, 0.1], "predicted_energy_per_token_j": [0.4, 0.2, 0.3, 0.1],
                      "measured_p90_itl_s": [0.01, 0.02, 0.01, 0.02], "predicted_p90_itl_s": [0.01, 0.02, 0.01, 0.02],
                      "steady_state_replayed": [True] * 4})
    lines = report.slo_lines(t, [0.05])
    assert lines == ["- 1 GPU(s), p90 ITL <= 50 ms: least energy per token at max batch 32 (measured), 32 (predicted): same",
                     "- 2 GPU(s), p90 ITL <= 50 ms: least energy per token at max batch 64 (measured), 64 (predicted): same"]
