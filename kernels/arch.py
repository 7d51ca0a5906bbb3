"""The widths of one decoder layer of an LLM (what the linear-layer and decoder-layer cases
compute), and the presets: real architectures, and scaled-down ones that run on a CPU.

This is the one source of the presets' layer dimensions: the serving model
(`bench.carbon.serving.models.PRESETS`) takes them from here, and `arch=<preset>` on the command
line sets `heads`, `kv_heads`, `head_dim`, `hidden` and `ffn` from here.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerDims:
    """One decoder layer: attention with `heads` query heads sharing `kv_heads` KV heads of
    `head_dim` each, then a SwiGLU MLP of width `ffn`; `hidden` is the residual stream's width."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int

    def projections(self) -> dict[str, tuple[int, int]]:
        """`(in_features, out_features)` of each linear projection, in the order a layer runs them
        (q, k and v fused into one; gate and up fused into one)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"qkv": (self.hidden, q + 2 * kv), "o": (q, self.hidden), "gate_up": (self.hidden, 2 * self.ffn),
                "down": (self.ffn, self.hidden)}

    @property
    def weights(self) -> int:
        """Weights of the layer's linear projections (norm weights, 2 x hidden, left out)."""
        return sum(i * o for i, o in self.projections().values())


# Real architectures: each model's config.json on the Hugging Face Hub (hidden_size, num_attention_heads,
# num_key_value_heads, head_dim, intermediate_size; Gemma 3's `text_config`), of the model named beside it
# (its full repository id is in `bench.carbon.serving.models.PRESETS`). Several models share one
# layer (Llama-3 and 3.1 8B and DeepSeek-R1-Distill-Llama-8B; 70B likewise). Gemma 3's MLP is gated GELU,
# not SwiGLU: the same three matrices, so the same widths. Qwen2 (the R1 distills) adds q/k/v biases, Qwen3
# and Gemma 3 q/k norms: a few thousand weights a layer, left out.
# Scaled down: Llama-3-8B's ratios (GQA 4:1, ffn = 3.5 x hidden) at 1/8 its width and half its
# head size, so a layer runs in milliseconds on a few CPU cores; `tiny` is for tests.
ARCHS = {
    "llama3_8b": LayerDims(hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336),  # meta-llama/Llama-3.1-8B
    "llama3_70b": LayerDims(hidden=8192, heads=64, kv_heads=8, head_dim=128, ffn=28672),  # meta-llama/Llama-3.1-70B
    "llama3_2_1b": LayerDims(hidden=2048, heads=32, kv_heads=8, head_dim=64, ffn=8192),  # meta-llama/Llama-3.2-1B
    "llama3_2_3b": LayerDims(hidden=3072, heads=24, kv_heads=8, head_dim=128, ffn=8192),  # meta-llama/Llama-3.2-3B
    "qwen3_0_6b": LayerDims(hidden=1024, heads=16, kv_heads=8, head_dim=128, ffn=3072),  # Qwen/Qwen3-0.6B
    "qwen3_1_7b": LayerDims(hidden=2048, heads=16, kv_heads=8, head_dim=128, ffn=6144),  # Qwen/Qwen3-1.7B
    "qwen3_4b": LayerDims(hidden=2560, heads=32, kv_heads=8, head_dim=128, ffn=9728),  # Qwen/Qwen3-4B
    "qwen3_8b": LayerDims(hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=12288),  # Qwen/Qwen3-8B
    "qwen3_14b": LayerDims(hidden=5120, heads=40, kv_heads=8, head_dim=128, ffn=17408),  # Qwen/Qwen3-14B
    "qwen3_32b": LayerDims(hidden=5120, heads=64, kv_heads=8, head_dim=128, ffn=25600),  # Qwen/Qwen3-32B
    "qwen2_5_7b": LayerDims(hidden=3584, heads=28, kv_heads=4, head_dim=128, ffn=18944),  # R1-Distill-Qwen-7B
    "qwen2_5_14b": LayerDims(hidden=5120, heads=40, kv_heads=8, head_dim=128, ffn=13824),  # R1-Distill-Qwen-14B
    "qwen2_5_32b": LayerDims(hidden=5120, heads=40, kv_heads=8, head_dim=128, ffn=27648),  # R1-Distill-Qwen-32B
    "gemma3_1b": LayerDims(hidden=1152, heads=4, kv_heads=1, head_dim=256, ffn=6912),  # google/gemma-3-1b-it
    "gemma3_4b": LayerDims(hidden=2560, heads=8, kv_heads=4, head_dim=256, ffn=10240),  # google/gemma-3-4b-it
    "gemma3_12b": LayerDims(hidden=3840, heads=16, kv_heads=8, head_dim=256, ffn=15360),  # google/gemma-3-12b-it
    "gemma3_27b": LayerDims(hidden=5376, heads=32, kv_heads=16, head_dim=128, ffn=21504),  # google/gemma-3-27b-it
    "mistral_7b": LayerDims(hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336),  # Mistral-7B-Instruct-v0.3
    "mistral_nemo_12b": LayerDims(hidden=5120, heads=32, kv_heads=8, head_dim=128, ffn=14336),  # Mistral-Nemo-2407
    "mistral_small_24b": LayerDims(hidden=5120, heads=32, kv_heads=8, head_dim=128, ffn=32768),  # Mistral-Small-24B-2501
    "phi4": LayerDims(hidden=5120, heads=40, kv_heads=10, head_dim=128, ffn=17920),  # microsoft/phi-4
    "cpu_small": LayerDims(hidden=512, heads=8, kv_heads=2, head_dim=64, ffn=1792),
    "tiny": LayerDims(hidden=32, heads=4, kv_heads=2, head_dim=8, ffn=48),
}
