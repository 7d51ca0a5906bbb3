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


# Real architectures: Meta's Llama 3 and Qwen's Qwen3 model cards (config.json of each).
# Scaled down: Llama-3-8B's ratios (GQA 4:1, ffn = 3.5 x hidden) at 1/8 its width and half its
# head size, so a layer runs in milliseconds on a few CPU cores; `tiny` is for tests.
ARCHS = {
    "llama3_8b": LayerDims(hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336),
    "llama3_70b": LayerDims(hidden=8192, heads=64, kv_heads=8, head_dim=128, ffn=28672),
    "qwen3_8b": LayerDims(hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=12288),
    "cpu_small": LayerDims(hidden=512, heads=8, kv_heads=2, head_dim=64, ffn=1792),
    "tiny": LayerDims(hidden=32, heads=4, kv_heads=2, head_dim=8, ffn=48),
}
