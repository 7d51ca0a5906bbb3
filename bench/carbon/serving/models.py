"""LLM architectures as the serving model needs them: layers, widths, heads, vocabulary; the
weight and KV-cache bytes they imply."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context_tokens: int  # the window prompt + output must fit in
    dtype_bytes: int = 2

    @property
    def linear_params(self) -> int:
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return self.layers * (attn + 3 * self.hidden * self.ffn)

    @property
    def weight_bytes(self) -> float:
        return float((self.linear_params + 2 * self.vocab * self.hidden) * self.dtype_bytes)

    @property
    def kv_bytes_per_token(self) -> float:
        return float(2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes)


# Context windows: Meta's Llama 3 model card (8k for 8B and 70B); Qwen's Qwen3-8B model card
# (32,768 tokens natively, 131,072 only with YaRN scaling, which a plain deployment does not enable).
PRESETS = {
    "llama3_8b": ModelSpec("Llama-3-8B", 32, 4096, 32, 8, 128, 14336, 128256, context_tokens=8192),
    "llama3_70b": ModelSpec("Llama-3-70B", 80, 8192, 64, 8, 128, 28672, 128256, context_tokens=8192),
    "qwen3_8b": ModelSpec("Qwen3-8B", 36, 4096, 32, 8, 128, 12288, 151936, context_tokens=32768),
}
