"""Model presets: their weights match the parameter counts the model cards publish, a tied
embedding is held once, and a preset is found by its key or a Hugging Face id in any case."""
import pytest

from bench.carbon import serving
from bench.carbon.serving import models


# Parameter counts as the model cards state them (billions, rounded as published).
@pytest.mark.parametrize("key, billions", [
    ("llama3_1_8b", 8.0), ("llama3_2_1b", 1.24), ("llama3_2_3b", 3.21), ("qwen3_0_6b", 0.6), ("qwen3_4b", 4.0),
    ("qwen3_8b", 8.2), ("qwen3_14b", 14.8), ("qwen3_32b", 32.8), ("gemma3_12b", 12.2), ("gemma3_27b", 27.4),
    ("mistral_nemo_12b", 12.2), ("mistral_small_24b", 23.6), ("phi4", 14.7), ("qwen2_5_7b", 7.6),
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
