"""Linear-layer cases: one projection of a decoder layer (`kernels.arch.LayerDims.projections`)
at the tokens of a serving step, `y = x @ W^T` through `torch.nn.functional.linear`.

A decode step multiplies one token per request (tokens = batch), a prefill step every prompt
token (tokens = batch x seq_len); the weights are read once either way, so decode is
bandwidth-bound and prefill compute-bound, and one roofline per projection spans both.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from kernels.arch import LayerDims
from kernels.registry import Case, Shape

PROJECTIONS = ("qkv", "o", "gate_up", "down")
# The fields that define a linear point of each phase (heads matter to qkv and o only, ffn to the MLP).
_TOKENS_FIELDS = {"prefill": ("batch_size", "seq_len"), "decode": ("batch_size",)}
_WIDTH_FIELDS = {"qkv": ("hidden", "heads", "kv_heads", "head_dim"), "o": ("hidden", "heads", "head_dim"),
                 "gate_up": ("hidden", "ffn"), "down": ("hidden", "ffn")}


def dims_of(shape: Shape) -> LayerDims:
    return LayerDims(hidden=shape.hidden, heads=shape.heads, kv_heads=shape.kv_heads, head_dim=shape.head_dim,
                     ffn=shape.ffn)


def projection_of(case: Case) -> str:
    """`qkv`, `o`, `gate_up` or `down`, from the case's op (`linear.<projection>`)."""
    return case.op.removeprefix("linear.")


def step_tokens(case: Case, shape: Shape) -> int:
    """Tokens of one step: every prompt token in prefill, one per request in decode."""
    return shape.batch_size * (shape.seq_len if case.phase == "prefill" else 1)


def linear_flops(case: Case, shape: Shape) -> float:
    """2 per weight per token (a multiply and an add)."""
    n_in, n_out = dims_of(shape).projections()[projection_of(case)]
    return 2.0 * step_tokens(case, shape) * n_in * n_out


def linear_min_bytes_of(n_in: int, n_out: int, tokens: int, dtype: torch.dtype) -> float:
    """The weights read once, the input read once, the output written once."""
    e = torch.empty((), dtype=dtype).element_size()
    return float(e * (n_in * n_out + tokens * n_in + tokens * n_out))


def linear_min_bytes(case: Case, shape: Shape, dtype: torch.dtype) -> float:
    n_in, n_out = dims_of(shape).projections()[projection_of(case)]
    return linear_min_bytes_of(n_in, n_out, step_tokens(case, shape), dtype)


def build_linear(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int
                 ) -> Callable[[], torch.Tensor]:
    gen = torch.Generator(device=device).manual_seed(seed)
    n_in, n_out = dims_of(shape).projections()[projection_of(case)]
    m = step_tokens(case, shape)
    # Random data scaled like an initialised layer (outputs of unit size), never zeros.
    x = torch.randn((m, n_in), generator=gen, device=device, dtype=torch.float32).to(dtype)
    w = (torch.randn((n_out, n_in), generator=gen, device=device, dtype=torch.float32) / n_in ** 0.5).to(dtype)
    return lambda: F.linear(x, w)


def linear_cases() -> list[Case]:
    """`gemm.<projection>.<phase>` for every projection and phase, PyTorch's `linear`."""
    return [Case(f"gemm.{p}.{phase}", phase, "torch", build_linear, family="torch", op=f"linear.{p}",
                 fields=_TOKENS_FIELDS[phase] + _WIDTH_FIELDS[p], flops_fn=linear_flops,
                 min_bytes_fn=linear_min_bytes, tokens_fn=step_tokens, speed_contender=False)
            for p in PROJECTIONS for phase in ("prefill", "decode")]
