"""Model presets: their weights match the parameter counts the model cards publish, a tied
embedding is held once, a mixture of experts runs and reads only its routed experts, and a preset
is found by its key or a Hugging Face id in any case."""
import pytest

from bench.carbon import serving
from bench.carbon.serving import models


# Parameter counts as the model cards state them (billions, rounded as published).
@pytest.mark.parametrize("key, billions", [
    ("llama3_1_8b", 8.0), ("llama3_2_1b", 1.24), ("llama3_2_3b", 3.21), ("qwen3_0_6b", 0.6), ("qwen3_4b", 4.0),
    ("qwen3_8b", 8.2), ("qwen3_14b", 14.8), ("qwen3_32b", 32.8), ("gemma3_12b", 12.2), ("gemma3_27b", 27.4),
    ("mistral_nemo_12b", 12.2), ("mistral_small_24b", 23.6), ("phi4", 14.7), ("qwen2_5_7b", 7.6),
    ("qwen3_30b_a3b", 30.5), ("qwen3_30b_a3b_2507", 30.5),
])
def test_a_preset_holds_the_weights_its_model_card_counts(key, billions):
    m = serving.PRESETS[key]
    assert m.weight_bytes / m.dtype_bytes / 1e9 == pytest.approx(billions, rel=0.02)


def test_a_tied_embedding_is_held_once_and_the_lm_head_is_streamed_either_way():
    m = serving.PRESETS["qwen3_4b"]
    assert m.tied_embeddings and not serving.PRESETS["qwen3_8b"].tied_embeddings
    untied = models.ModelSpec(**{**m.__dict__, "tied_embeddings": False})
    assert untied.weight_bytes - m.weight_bytes == m.vocab * m.hidden * m.dtype_bytes
    # A step reads the layers and the LM head (the one matrix, tied or not); the input embedding is a gather.
    assert m.streamed_bytes_per_step == untied.streamed_bytes_per_step == (m.linear_params + m.vocab * m.hidden) * 2


def test_a_preset_is_named_by_key_display_name_or_hugging_face_id_in_any_case():
    assert serving.preset_key("Qwen/Qwen3-14B") == serving.preset_key("qwen/QWEN3-14b") == "qwen3_14b"
    assert serving.preset_key("QWEN3_14B") == serving.preset_key("Qwen3-14B") == "qwen3_14b"
    assert serving.preset_key("meta-llama/Llama-3.1-8B-Instruct") == "llama3_1_8b"
    assert serving.preset_key("gpt5") is None
    with pytest.raises(KeyError, match="qwen3_14b"):  # an unknown name lists the presets
        serving.preset("gpt5")
    ids = [h.lower() for m in serving.PRESETS.values() for h in m.hf_ids]
    assert len(ids) == len(set(ids))  # each id names one preset


def test_a_mixture_of_experts_runs_its_routed_experts_and_a_step_reads_those_its_tokens_route_to():
    m = serving.PRESETS["qwen3_30b_a3b"]
    # The model card: 30.5 B in all, 29.9 B without the embeddings, 3.3 B activated (with both
    # embedding matrices; a token's flops run the layers' share and the LM head).
    assert m.linear_params / 1e9 == pytest.approx(29.9, rel=0.01)
    assert (m.active_linear_params + 2 * m.embedding_params) / 1e9 == pytest.approx(3.3, rel=0.02)
    assert m.weight_bytes == (m.linear_params + 2 * m.embedding_params) * 2  # every expert is held
    cost = serving.StepCost.of(m, serving.datasheet("h100_sxm"))
    assert cost.flop_per_token == 2.0 * m.active_linear_params
    # One token reads 8 of 128 experts; a large step all of them (uniform routing, an upper bound).
    assert cost.experts_read_bytes(1.0) == pytest.approx(m.expert_bytes * 8 / 128)
    assert cost.experts_read_bytes(4096.0) == pytest.approx(m.expert_bytes, rel=1e-9)
    reads = [cost.experts_read_bytes(float(t)) for t in (1, 2, 8, 32, 128)]
    assert all(a < b for a, b in zip(reads, reads[1:]))
    # so a decode step's time grows with its batch through the weights, not only the KV cache
    t1, _ = cost.time_energy(0.0, 0.0, 1.0, 0.0, 0.0)
    t16, _ = cost.time_energy(0.0, 0.0, 16.0, 0.0, 0.0)
    assert t16 > 3 * t1 - 2 * cost.device.overhead_s
    # A dense model is unchanged: every weight runs, nothing routed.
    dense = serving.PRESETS["llama3_1_8b"]
    assert dense.active_linear_params == dense.linear_params and dense.expert_bytes == 0.0 and dense.mlp_width == dense.ffn
    assert serving.StepCost.of(dense, serving.datasheet("h100_sxm")).experts_read_bytes(64.0) == 0.0
    with pytest.raises(ValueError, match="experts_per_token"):
        models.ModelSpec("bad", 2, 64, 4, 4, 16, 0, 100, 1024, experts=8, experts_per_token=9, expert_ffn=32)
    with pytest.raises(ValueError, match="mixture of experts"):  # the dense linear and layer cases do not compose it
        m.layer


def test_a_replica_of_more_gpus_than_kv_heads_holds_and_reads_each_head_on_several():
    # Qwen3-235B-A22B has 4 KV heads: on 8 GPUs each holds one, so every head is on two of them.
    m = serving.PRESETS["qwen3_235b_a22b"]
    assert m.weight_bytes / 2 / 1e9 == pytest.approx(235, rel=0.01)
    assert (m.active_linear_params + 2 * m.embedding_params) / 1e9 == pytest.approx(22, rel=0.02)
    on8 = serving.StepCost.of(m, serving.datasheet("h100_sxm", 8))
    on4 = serving.StepCost.of(m, serving.datasheet("h100_sxm", 4))
    assert on8.bytes_per_context_token == on8.bytes_per_new_token == 2 * m.kv_bytes_per_token
    assert on4.bytes_per_context_token == m.kv_bytes_per_token
    # a model with 8 KV heads on 8 GPUs: one each, none held twice
    llama = serving.PRESETS["llama3_1_70b"]
    assert serving.StepCost.of(llama, serving.datasheet("h100_sxm", 8)).bytes_per_context_token == llama.kv_bytes_per_token


def test_a_hybrid_runs_its_mamba_layers_holds_kv_in_its_attention_layers_and_a_state_per_request():
    import dataclasses

    import numpy as np

    from bench.carbon.serving.simulate import simulate

    m = serving.PRESETS["nemotron_nano_9b_v2"]
    # The model card: 8.89 B parameters; 4 of its 56 layers attend, so 16 KiB of KV a token (Llama-3.1-8B: 128).
    assert m.weight_bytes / 2 / 1e9 == pytest.approx(8.89, rel=0.005)
    assert m.kv_layers == 4 and m.kv_bytes_per_token == 2 * 4 * 8 * 128 * 2
    # Each Mamba-2 layer keeps 3 columns of its 12,288 convolution channels and 128 heads x 80 x 128 of state.
    assert m.state_bytes_per_seq == 27 * (12288 * 3 + 128 * 80 * 128) * 2
    cost = serving.StepCost.of(m, serving.datasheet("h100_sxm"))
    assert cost.flop_per_prefill_pair == 4.0 * 4 * 40 * 128 and cost.allreduces_per_step == 56  # one per block
    # A decode step reads and writes each request's state once: 32 requests, 64 states' bytes more than
    # the same step without the state, in time and in energy.
    stateless = dataclasses.replace(cost, bytes_per_sampled_seq=0.0)
    for device in (cost.device, dataclasses.replace(cost.device, kv_bytes_per_s=0.0)):  # split and single roofline
        with_state = dataclasses.replace(cost, device=device).time_energy(0.0, 0.0, 32.0, 32000.0, 0.0)
        without = dataclasses.replace(stateless, device=device).time_energy(0.0, 0.0, 32.0, 32000.0, 0.0)
        assert with_state[0] - without[0] == pytest.approx(64 * m.state_bytes_per_seq / device.bytes_per_s, rel=1e-6)
        assert with_state[1] - without[1] >= device.e_byte_j * 64 * m.state_bytes_per_seq
    # Memory: each running request's state takes pages of the KV memory. Room for the weights, 10.5
    # states and 1,000 tokens of KV: ten requests run at most (not the 64 the batch cap allows).
    device = dataclasses.replace(serving.datasheet("h100_sxm"),
                                 memory_bytes=m.weight_bytes + 10.5 * m.state_bytes_per_seq + 1000 * m.kv_bytes_per_token)
    n = 40
    res = simulate(np.zeros(n), np.full(n, 16), np.full(n, 20), serving.StepCost.of(m, device), 64)
    assert 9 <= res.max_running <= 10
    dense_like = dataclasses.replace(m, attention_layers=56 - 27 - 25 + 27, mamba_layers=0)  # no state: all 40 run
    assert simulate(np.zeros(n), np.full(n, 16), np.full(n, 20), serving.StepCost.of(dense_like, dataclasses.replace(
        device, memory_bytes=dense_like.weight_bytes + 10.5 * m.state_bytes_per_seq)), 64).max_running == n
