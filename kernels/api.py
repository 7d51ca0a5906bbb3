"""Public functional API: `prefill` and `decode` dispatch to an implementation by name.

Shapes are checked here (cheaply, without reading device memory) so every implementation can
assume valid input; an unsupported combination raises `ValueError` naming what is wrong.
"""
from __future__ import annotations

from typing import Callable

import torch

from kernels import offload, torch_attention

DecodeImpl = Callable[..., torch.Tensor]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _decode_triton(*args: object, **kwargs: object) -> torch.Tensor:
    # Imported on first use: `kernels` stays importable where Triton is not installed.
    from kernels.triton_decode import decode_triton

    return decode_triton(*args, **kwargs)


def _decode_triton_tma(*args: object, **kwargs: object) -> torch.Tensor:
    return _decode_triton(*args, tma=True, **kwargs)


def _decode_impls() -> dict[str, DecodeImpl]:
    return {
        "torch": torch_attention.decode_torch,
        "triton": _decode_triton,
        "triton_tma": _decode_triton_tma,
        "offload_cpu": offload.decode_offload_cpu,
        "offload_split": offload.decode_offload_split,
        "offload_stream": offload.decode_offload_stream,
    }


# Options each decode implementation accepts besides the common arguments.
_DECODE_OPTS = {
    "torch": (),
    "triton": ("num_splits",),
    "triton_tma": ("num_splits",),
    "offload_cpu": ("threads",),
    "offload_split": ("host_k_cache", "host_v_cache", "host_seq_lens", "threads", "device_impl"),
    "offload_stream": ("chunks", "device_impl"),
}
# Where each implementation expects the KV cache: with q, or in host memory whatever q's device.
_HOST_CACHE = ("offload_cpu", "offload_stream")


def prefill_impls() -> tuple[str, ...]:
    return ("triton", "triton_tma") + tuple(torch_attention.PREFILL_BACKENDS)


def decode_impls() -> tuple[str, ...]:
    return tuple(_decode_impls())


def _check_common(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hq: int, hkv: int,
                  same_device: bool = True) -> None:
    if q.dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype {q.dtype} is not supported; use one of {FLOAT_DTYPES}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v dtypes differ: {q.dtype}, {k.dtype}, {v.dtype}")
    if k.device != v.device or (same_device and q.device != k.device):
        raise ValueError(f"q, k, v devices differ: {q.device}, {k.device}, {v.device}")
    if k.shape != v.shape:
        raise ValueError(f"k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"head_dim of q ({q.shape[-1]}) != head_dim of k ({k.shape[-1]})")
    if hkv < 1 or hq % hkv != 0:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hkv})")


def prefill(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    sm_scale: float | None = None,
    impl: str = "triton",
) -> torch.Tensor:
    """Attention forward over whole sequences.

    Args:
        q: `[B, Hq, N, D]` queries.
        k, v: `[B, Hkv, M, D]` keys and values, `Hq % Hkv == 0` (GQA/MQA).
        causal: mask aligned to the end: query i sees keys `j <= i + M - N` (needs N <= M).
        sm_scale: softmax scale, default `1/sqrt(D)`.
        impl: one of `prefill_impls()`: `triton` (default; head_dim 64 or 128; CPU tensors need
            `TRITON_INTERPRET=1`), `triton_tma` (the same
            kernel loading tiles through TMA tensor descriptors: contiguous inputs, Hopper or
            newer, or the interpreter), or SDPA with PyTorch's choice of backend (`torch`) or
            one pinned (`torch_math`, `torch_flash`, ...).

    Returns:
        `[B, Hq, N, D]` in q's dtype.
    """
    if impl not in prefill_impls():
        raise ValueError(f"prefill impl {impl!r} unknown; choose one of {prefill_impls()}")
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError(f"prefill needs 4-D q [B,Hq,N,D] and k/v [B,Hkv,M,D]; got {tuple(q.shape)}, {tuple(k.shape)}")
    _check_common(q, k, v, q.shape[1], k.shape[1])
    if q.shape[0] != k.shape[0]:
        raise ValueError(f"batch of q ({q.shape[0]}) != batch of k ({k.shape[0]})")
    if causal and q.shape[2] > k.shape[2]:
        raise ValueError(f"causal prefill needs N <= M; got N={q.shape[2]}, M={k.shape[2]}")
    if impl in ("triton", "triton_tma"):
        from kernels.triton_prefill import prefill_triton

        return prefill_triton(q, k, v, causal=causal, sm_scale=sm_scale, tma=impl == "triton_tma")
    return torch_attention.prefill_torch(
        q, k, v, causal=causal, sm_scale=sm_scale, backend=torch_attention.PREFILL_BACKENDS[impl]
    )


def decode(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    block_table: torch.Tensor | None = None,
    sm_scale: float | None = None,
    impl: str = "triton",
    **opts: object,
) -> torch.Tensor:
    """One new query token per request attending to its cached keys and values.

    Args:
        q: `[B, Hq, D]`.
        k_cache, v_cache: contiguous `[B, Hkv, L, D]`, or paged `[P, page_size, Hkv, D]` with
            `block_table`. On q's device, except for `offload_cpu` and `offload_stream`, which
            take them in host memory; `offload_split` takes the device part here and the host
            part as options (see `kernels.offload`).
        seq_lens: `[B]` integer lengths, `1 <= seq_lens[b] <=` cache capacity; may differ.
            For `impl="torch"`, slots past a request's length must hold finite values of ordinary
            magnitude: masked SDPA weighs them by zero (0 x NaN is NaN), and the cuDNN backend
            PyTorch picks on Hopper masks with a finite bias that values near 1e4 overcome
            (measured on H100 with torch 2.11: `scripts/debug_decode_mask.py`).
        block_table: `[B, max_pages]` page indices into the paged caches; entries past a
            request's length must still be valid page indices (they are masked, not read).
        sm_scale: softmax scale, default `1/sqrt(D)`.
        impl: one of `decode_impls()`: `triton` (default; CPU tensors need `TRITON_INTERPRET=1`),
            `triton_tma` (contiguous caches; K/V tiles
            through TMA tensor descriptors, Hopper or newer), `torch`, or a CPU offload (`offload_cpu`,
            `offload_split`, `offload_stream`; contiguous caches only).
        opts: implementation options; unknown ones raise. `triton`, `triton_tma`: `num_splits`.
            `offload_cpu`: `threads`. `offload_split`: `host_k_cache`, `host_v_cache`,
            `host_seq_lens` (required), `threads`, `device_impl`. `offload_stream`: `chunks`,
            `device_impl` (`auto`: triton on CUDA, torch elsewhere).

    Returns:
        `[B, Hq, D]` in q's dtype.
    """
    impls = _decode_impls()
    if impl not in impls:
        raise ValueError(f"decode impl {impl!r} unknown; choose one of {decode_impls()}")
    unknown = sorted(set(opts) - set(_DECODE_OPTS[impl]))
    if unknown:
        raise ValueError(f"decode impl {impl!r} does not take options {unknown}; it takes {list(_DECODE_OPTS[impl])}")
    if q.dim() != 3 or k_cache.dim() != 4:
        raise ValueError(f"decode needs q [B,Hq,D] and 4-D caches; got {tuple(q.shape)}, {tuple(k_cache.shape)}")
    batch = q.shape[0]
    if block_table is None:
        hkv = k_cache.shape[1]
        if k_cache.shape[0] != batch:
            raise ValueError(f"contiguous cache batch ({k_cache.shape[0]}) != q batch ({batch})")
    else:
        hkv = k_cache.shape[2]
        if block_table.dim() != 2 or block_table.shape[0] != batch:
            raise ValueError(f"block_table must be [B={batch}, max_pages]; got {tuple(block_table.shape)}")
        if block_table.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"block_table must be int32 or int64; got {block_table.dtype}")
    _check_common(q, k_cache, v_cache, q.shape[1], hkv, same_device=impl not in _HOST_CACHE)
    if impl == "offload_split":
        missing = [name for name in ("host_k_cache", "host_v_cache", "host_seq_lens") if name not in opts]
        if missing:
            raise ValueError(f"decode impl 'offload_split' needs options {missing} (the host part of the cache)")
    if seq_lens.shape != (batch,):
        raise ValueError(f"seq_lens must have shape [B={batch}]; got {tuple(seq_lens.shape)}")
    return impls[impl](q, k_cache, v_cache, seq_lens, block_table=block_table, sm_scale=sm_scale, **opts)
