"""A user's own kernel measured by the harness, as the README shows it:

    python -m bench kernel=custom kernel.target=tests.kernels.custom_case_example:make_case batch_size=4

Decode attention written as two plain matmuls (the kind of kernel a researcher brings: replace
`naive_decode` with FlashInfer's or your Triton kernel). The factory declares the case once:
its phase and traits, the work of one call, and a builder returning a no-argument closure over
preallocated inputs.
"""
from __future__ import annotations

import torch

from kernels import Case, Shape


def naive_decode(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q `[B, Hq, D]`, k/v `[B, Hkv, L, D]` -> `[B, Hq, D]`, GQA by repeating KV heads."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = torch.einsum("bhd,bhld->bhl", q, k) / q.shape[-1] ** 0.5
    return torch.einsum("bhl,bhld->bhd", scores.softmax(-1), v)


def build(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    b, hq, hkv, d, n = shape.batch_size, shape.heads, shape.kv_heads, shape.head_dim, shape.context_len
    q = torch.randn((b, hq, d), generator=gen, device=device, dtype=dtype)
    k = torch.randn((b, hkv, n, d), generator=gen, device=device, dtype=dtype)
    v = torch.randn((b, hkv, n, d), generator=gen, device=device, dtype=dtype)
    return lambda: naive_decode(q, k, v)


def flops(case: Case, shape: Shape) -> float:
    return 4.0 * shape.batch_size * shape.heads * shape.head_dim * shape.context_len  # QK^T and PV


def min_bytes(case: Case, shape: Shape, dtype: torch.dtype) -> float:
    e = torch.empty((), dtype=dtype).element_size()
    kv = 2 * shape.batch_size * shape.kv_heads * shape.context_len * shape.head_dim
    return float(e * (kv + 2 * shape.batch_size * shape.heads * shape.head_dim))  # caches read, q read, o written


def tokens(case: Case, shape: Shape) -> int:
    return shape.batch_size  # one new token per request


def make_case() -> Case:
    return Case("decode.naive_einsum", "decode", "naive_einsum", build, family="custom",
                flops_fn=flops, min_bytes_fn=min_bytes, tokens_fn=tokens)


def make_prefill_named_like_a_builtin() -> Case:
    """A factory the harness must refuse: its name is a built-in case's."""
    return Case("decode.torch", "decode", "naive_einsum", build)
