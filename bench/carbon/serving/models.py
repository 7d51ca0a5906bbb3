"""LLM architectures as the serving model needs them: layers, widths, heads, vocabulary; the
weight and KV-cache bytes they imply."""
from __future__ import annotations

from dataclasses import dataclass

from kernels.arch import ARCHS, LayerDims


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


    @property
    def layer(self) -> LayerDims:
        """One decoder layer's widths, as the linear and layer cases take them."""
        return LayerDims(self.hidden, self.heads, self.kv_heads, self.head_dim, self.ffn)


def _spec(name: str, arch: str, layers: int, vocab: int, context_tokens: int) -> ModelSpec:
    d = ARCHS[arch]  # the layer widths have one source, shared with the kernel cases
    return ModelSpec(name, layers, d.hidden, d.heads, d.kv_heads, d.head_dim, d.ffn, vocab, context_tokens)


# Context windows: Meta's Llama 3 model card (8k for 8B and 70B); Qwen's Qwen3-8B model card
# (32,768 tokens natively, 131,072 only with YaRN scaling, which a plain deployment does not enable).
PRESETS = {
    "llama3_8b": _spec("Llama-3-8B", "llama3_8b", 32, 128256, context_tokens=8192),
    "llama3_70b": _spec("Llama-3-70B", "llama3_70b", 80, 128256, context_tokens=8192),
    "qwen3_8b": _spec("Qwen3-8B", "qwen3_8b", 36, 151936, context_tokens=32768),
}
