"""Decoder-layer cases: one whole Llama-style layer with random weights, as a serving step runs it.

    h = x + O(attention(RoPE(Q(n1)), RoPE(K(n1)), V(n1)))     n1 = RMSNorm(x)
    y = h + Down(SiLU(Gate(n2)) * Up(n2))                     n2 = RMSNorm(h)

Q, K and V are one fused projection, Gate and Up another (`kernels.arch.LayerDims.projections`).
Prefill runs causal attention over each prompt (`kernels.prefill`; the prompt's K and V are not
written to a cache). Decode runs one token per request: its K and V are written at the last slot
of the request's cache (position `context_len - 1`, contiguous or paged), then it attends the
whole cache (`kernels.decode`).

A layer case declares its parts (`Case.parts`): the linear cases and the attention case it runs
one after another, at the same shape, so its cost can be composed from theirs. What the parts
leave out (the norms, RoPE, SiLU-and-multiply, residual adds, the cache write) is the layer's
overhead beyond them.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kernels.api import decode, prefill
from kernels.inputs import generator, make_paged_cache, randn
from kernels.linear import PROJECTIONS, dims_of, linear_min_bytes_of, step_tokens
from kernels.registry import Case, Parts, Shape, attention_flops, attention_min_bytes

ROPE_THETA = 500000.0  # Llama 3's RoPE base (its config.json)
NORM_EPS = 1e-5


@dataclass(frozen=True)
class LayerWeights:
    """Weights of one layer, `[out_features, in_features]` as `torch.nn.functional.linear` takes them."""

    attn_norm: torch.Tensor  # [hidden]
    qkv: torch.Tensor  # [(heads + 2 kv_heads) head_dim, hidden]
    o: torch.Tensor  # [hidden, heads head_dim]
    mlp_norm: torch.Tensor  # [hidden]
    gate_up: torch.Tensor  # [2 ffn, hidden]
    down: torch.Tensor  # [hidden, ffn]


def random_weights(shape: Shape, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> LayerWeights:
    """Weights scaled as initialised (each projection keeps activations of unit size), never zeros."""
    mats = {}
    for name, (n_in, n_out) in dims_of(shape).projections().items():
        mats[name] = (torch.randn((n_out, n_in), generator=gen, device=device) / n_in ** 0.5).to(dtype)
    norm = lambda: (1.0 + 0.1 * torch.randn((shape.hidden,), generator=gen, device=device)).to(dtype)
    return LayerWeights(attn_norm=norm(), mlp_norm=norm(), **mats)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """x / RMS(x) x weight over the last dimension, the statistics in float32."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


def rope_tables(positions: torch.Tensor, head_dim: int, dtype: torch.dtype, theta: float = ROPE_THETA
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `[*positions.shape, head_dim]` of rotary embeddings, halves rotated together."""
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.float()[..., None] * inv
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + head_dim / 2) of the last dimension by the position's angles."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def _split_qkv(qkv: torch.Tensor, shape: Shape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`[..., (hq + 2 hkv) d]` -> q `[..., hq, d]`, k and v `[..., hkv, d]`."""
    q_w, kv_w = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    q, k, v = qkv.split([q_w, kv_w, kv_w], dim=-1)
    lead = qkv.shape[:-1]
    return (q.reshape(*lead, shape.heads, shape.head_dim), k.reshape(*lead, shape.kv_heads, shape.head_dim),
            v.reshape(*lead, shape.kv_heads, shape.head_dim))


def _mlp(h: torch.Tensor, w: LayerWeights) -> torch.Tensor:
    gate, up = F.linear(rms_norm(h, w.mlp_norm), w.gate_up).chunk(2, dim=-1)
    return h + F.linear(F.silu(gate) * up, w.down)


def prefill_layer(x: torch.Tensor, w: LayerWeights, shape: Shape, cos: torch.Tensor, sin: torch.Tensor,
                  impl: str = "torch") -> torch.Tensor:
    """x `[B, N, hidden]` (N prompt tokens each), cos/sin `[N, head_dim]` -> `[B, N, hidden]`."""
    b, n, _ = x.shape
    q, k, v = _split_qkv(F.linear(rms_norm(x, w.attn_norm), w.qkv), shape)  # [B, N, h, d]
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, h, N, d]
    o = prefill(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, causal=True, impl=impl)
    h = x + F.linear(o.transpose(1, 2).reshape(b, n, -1), w.o)
    return _mlp(h, w)


@dataclass(frozen=True)
class DecodeCache:
    """A layer's KV cache, contiguous `[B, Hkv, L, D]` or paged `[P, page_size, Hkv, D]` with a
    block table; every request at `seq_lens` tokens once this step's token is written."""

    k: torch.Tensor
    v: torch.Tensor
    seq_lens: torch.Tensor
    block_table: torch.Tensor | None = None

    def write(self, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        """Store this step's K and V `[B, Hkv, D]` at each request's last position."""
        pos = self.seq_lens.long() - 1
        reqs = torch.arange(pos.numel(), device=pos.device)
        if self.block_table is None:
            self.k[reqs, :, pos], self.v[reqs, :, pos] = k_new, v_new
            return
        page_size = self.k.shape[1]
        pages = self.block_table[reqs, pos // page_size].long()
        self.k[pages, pos % page_size], self.v[pages, pos % page_size] = k_new, v_new


def decode_layer(x: torch.Tensor, w: LayerWeights, shape: Shape, cache: DecodeCache, cos: torch.Tensor,
                 sin: torch.Tensor, impl: str = "torch") -> torch.Tensor:
    """x `[B, hidden]` (one token per request), cos/sin `[B, head_dim]` of each token's position."""
    q, k, v = _split_qkv(F.linear(rms_norm(x, w.attn_norm), w.qkv), shape)  # [B, h, d]
    cos, sin = cos[:, None], sin[:, None]
    cache.write(apply_rope(k, cos, sin), v)
    o = decode(apply_rope(q, cos, sin), cache.k, cache.v, cache.seq_lens, block_table=cache.block_table, impl=impl)
    h = x + F.linear(o.reshape(x.shape[0], -1), w.o)
    return _mlp(h, w)


def _causal(shape: Shape) -> Shape:
    return dataclasses.replace(shape, causal=True)  # a decoder layer's prefill is causal


def layer_parts(case: Case, shape: Shape) -> Parts:
    """The linear cases and the attention case the layer runs, in order, at its shape."""
    attention = f"{case.phase}.{case.impl}" + ("_paged" if case.paged else "")
    linear = [(f"gemm.{p}.{case.phase}", shape) for p in PROJECTIONS]
    return (linear[0], (attention, _causal(shape)), *linear[1:])


def layer_flops(case: Case, shape: Shape) -> float:
    """The parts' flops: 2 per weight per token, and attention's (the elementwise ops, about
    20 per hidden element per token, are left out)."""
    return 2.0 * step_tokens(case, shape) * dims_of(shape).weights + attention_flops(case, _causal(shape))


def layer_min_bytes(case: Case, shape: Shape, dtype: torch.dtype) -> float:
    """What the parts move one after another (each reads its input and writes its output)."""
    m = step_tokens(case, shape)
    linear = sum(linear_min_bytes_of(n_in, n_out, m, dtype) for n_in, n_out in dims_of(shape).projections().values())
    return linear + attention_min_bytes(case, _causal(shape), dtype)


def build_layer(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int
                ) -> Callable[[], torch.Tensor]:
    gen = generator(device, seed)
    w = random_weights(shape, gen, device, dtype)
    b, d = shape.batch_size, shape.head_dim
    if case.phase == "prefill":
        x = randn((b, shape.seq_len, shape.hidden), gen, device, dtype)
        cos, sin = rope_tables(torch.arange(shape.seq_len, device=device), d, dtype)
        return lambda: prefill_layer(x, w, shape, cos, sin, impl=case.impl)
    x = randn((b, shape.hidden), gen, device, dtype)
    seq_lens = torch.full((b,), shape.context_len, dtype=torch.int32, device=device)
    k = randn((b, shape.kv_heads, shape.context_len, d), gen, device, dtype)
    v = randn((b, shape.kv_heads, shape.context_len, d), gen, device, dtype)
    cache = DecodeCache(k, v, seq_lens)
    if case.paged:  # only the paged copies are kept, so the contiguous ones are freed on return
        k_pages, v_pages, table = make_paged_cache(k, v, seq_lens, shape.page_size, gen)
        cache = DecodeCache(k_pages, v_pages, seq_lens, table)
    cos, sin = rope_tables(seq_lens - 1, d, dtype)
    return lambda: decode_layer(x, w, shape, cache, cos, sin, impl=case.impl)


def _even_head_dim(shape: Shape) -> tuple[str, str] | None:
    return None if shape.head_dim % 2 == 0 else ("head_dim", "layer cases rotate pairs of it (RoPE): it must be even")


_FIELDS = {"prefill": ("batch_size", "seq_len"), "decode": ("batch_size", "context_len")}
_WIDTHS = ("hidden", "heads", "kv_heads", "head_dim", "ffn")


def layer_cases() -> list[Case]:
    """`layer.prefill`, `layer.decode` (contiguous cache) and `layer.decode_paged`, attention
    through PyTorch (`impl=torch`)."""
    traits = {"family": "torch", "op": "layer", "flops_fn": layer_flops, "min_bytes_fn": layer_min_bytes,
              "tokens_fn": step_tokens, "parts_fn": layer_parts, "speed_contender": False,
              "shape_check": _even_head_dim}
    return [Case("layer.prefill", "prefill", "torch", build_layer, fields=_FIELDS["prefill"] + _WIDTHS, **traits),
            Case("layer.decode", "decode", "torch", build_layer, fields=_FIELDS["decode"] + _WIDTHS, **traits),
            Case("layer.decode_paged", "decode", "torch", build_layer, layout="paged",
                 fields=_FIELDS["decode"] + _WIDTHS, **traits)]
