"""Other models than the one the H100 was calibrated on: the predictions scale with the physics
(weights streamed set the small-batch decode step, KV bytes per token and the weights held set how
many requests fit), and task=validate runs end to end on a file of another preset named by its
Hugging Face id. There is no second measured file here: none of this checks accuracy."""
import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from bench.carbon import serving
from bench.carbon.serving.simulate import simulate
from bench.carbon.validation import measurements, replay
from tests.cli.runner import run_cli

GPU = "h100_sxm"


def test_a_small_batch_decode_step_takes_the_weights_it_streams_at_the_calibrated_bandwidth():
    dev = serving.datasheet(GPU)
    busy = {}
    for key in ("qwen3_0_6b", "qwen3_8b", "qwen3_32b"):
        m = serving.PRESETS[key]
        t, _ = serving.StepCost.of(m, dev).time_energy(0.0, 0.0, 1.0, 1.0, 0.0)  # one request, one cached token
        busy[key] = t - dev.overhead_s - dev.seq_s  # less the step's and its one request's overheads
        assert busy[key] == pytest.approx(m.streamed_bytes_per_step / dev.bytes_per_s, rel=0.02), key
    # 32B streams 8.6x the bytes of 0.6B...: the busy time follows, the per-step overhead does not.
    assert busy["qwen3_32b"] / busy["qwen3_0_6b"] == pytest.approx(
        serving.PRESETS["qwen3_32b"].streamed_bytes_per_step / serving.PRESETS["qwen3_0_6b"].streamed_bytes_per_step,
        rel=0.03)


@pytest.mark.parametrize("key", ["qwen3_8b", "qwen3_32b", "gemma3_12b"])
def test_the_requests_that_fit_follow_the_kv_bytes_per_token_and_the_weights_held(key):
    m = serving.PRESETS[key]
    conf = measurements.ValidateConf()
    dev = serving.datasheet(GPU)
    dev = dataclasses.replace(dev, memory_bytes=replay.serving_memory_bytes(GPU, 1, conf, m, 64))
    # vLLM's share, less the runtime's reserve and the activation peak of an 8,192-token step and 64
    # requests' logits, less the weights: the KV cache.
    act = 8192 * 2 * (3 * m.hidden + 3 * m.ffn) + 64 * m.vocab * 14
    pages = math.floor((0.9 * 81559 * 2 ** 20 - 2.18 * 2 ** 30 - act - m.weight_bytes) / (16 * m.kv_bytes_per_token))
    prompt_pages = 1024 // 16
    n = pages // prompt_pages + 8  # more 1,024-token prompts than the KV cache holds, all queued at once
    res = simulate(np.zeros(n), np.full(n, 1024), np.full(n, 2), serving.StepCost.of(m, dev), max_batch=4096)
    assert res.max_running == (pages - 1) // prompt_pages  # one page kept free (vLLM's watermark)


@pytest.mark.parametrize("model_id", ["Qwen/Qwen3-14B", "Qwen/Qwen3-30B-A3B-Instruct-2507",  # dense; experts;
                                      "nvidia/NVIDIA-Nemotron-Nano-9B-v2"])  # a hybrid with Mamba layers
def test_validate_runs_end_to_end_on_another_preset_named_by_its_hugging_face_id(tmp_path, model_id):
    # Made-up measurements (of the right magnitude, not a measurement): the run, not the numbers, is tested.
    path = tmp_path / "other.csv"
    pd.DataFrame({"model_id": model_id, "gpu_model": "H100", "num_gpus": 1, "max_num_seqs": [8, 32],
                  "avg_batch_size": [7.9, 31.5], "avg_output_len": [60.0, 60.0], "energy_per_token_j": [0.7, 0.25],
                  "p90_itl_ms": [12.0, 16.0], "avg_power_w": [450.0, 520.0]}).to_csv(path, index=False)
    out = tmp_path / "out"
    ran = run_cli("task=validate", f"validate.measurements={path}", f"validate.model={model_id}",
                  f"validate.gpu={GPU}", "validate.num_requests=24", f"validate.out_dir={out}",
                  f"results_dir={tmp_path / 'results'}")
    assert ran.code == 0, ran.stderr
    assert {p.name for p in out.iterdir()} >= {"validate.md", "validate.csv", "validate.png"}
    text = (out / "validate.md").read_text()
    assert text.startswith(f"# Validation: {model_id} on h100_sxm")  # the id matches: not a sensitivity run
    table = pd.read_csv(out / "validate.csv")
    assert table.max_num_seqs.tolist() == [8, 32] and (table.predicted_energy_per_token_j > 0).all()
