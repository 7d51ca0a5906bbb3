"""The registered benchmark cases and their input builders."""
from __future__ import annotations

import importlib.util
import os
from typing import Callable

import torch

from kernels.api import decode, prefill
from kernels.inputs import generator as _generator
from kernels.inputs import make_paged_cache
from kernels.inputs import randn as _randn
from kernels.layer import layer_cases
from kernels.linear import linear_cases
from kernels.offload import split_cache
from kernels.registry import OFFLOAD_MODES, Case, Registry, Shape

__all__ = ["REGISTRY", "make_paged_cache", "offload_case"]


def build_prefill(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int) -> Callable[[], torch.Tensor]:
    gen = _generator(device, seed)
    b, n, d = shape.batch_size, shape.seq_len, shape.head_dim
    q = _randn((b, shape.heads, n, d), gen, device, dtype)
    k = _randn((b, shape.kv_heads, n, d), gen, device, dtype)
    v = _randn((b, shape.kv_heads, n, d), gen, device, dtype)
    return lambda: prefill(q, k, v, causal=shape.causal, impl=case.impl)


def _decode_inputs(shape: Shape, device: torch.device, dtype: torch.dtype, gen: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, contiguous k and v caches, and seq_lens (every request at `context_len`)."""
    b, length, d = shape.batch_size, shape.context_len, shape.head_dim
    q = _randn((b, shape.heads, d), gen, device, dtype)
    seq_lens = torch.full((b,), length, dtype=torch.int32, device=device)
    k = _randn((b, shape.kv_heads, length, d), gen, device, dtype)
    v = _randn((b, shape.kv_heads, length, d), gen, device, dtype)
    return q, k, v, seq_lens


def build_decode(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int) -> Callable[[], torch.Tensor]:
    gen = _generator(device, seed)
    q, k, v, seq_lens = _decode_inputs(shape, device, dtype, gen)
    if not case.paged:
        return lambda: decode(q, k, v, seq_lens, impl=case.impl)
    # Only the paged copies are captured, so the contiguous ones are freed on return.
    k_pages, v_pages, table = make_paged_cache(k, v, seq_lens, shape.page_size, gen)
    return _paged_closure(case.impl, q, k_pages, v_pages, seq_lens, table)


def _paged_closure(impl: str, q: torch.Tensor, k_pages: torch.Tensor, v_pages: torch.Tensor,
                   seq_lens: torch.Tensor, table: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: decode(q, k_pages, v_pages, seq_lens, block_table=table, impl=impl)


def _host_copy(t: torch.Tensor) -> torch.Tensor:
    """A host-memory copy, pinned when it comes from a GPU (so transfers are asynchronous DMA)."""
    return t.cpu().pin_memory() if t.device.type == "cuda" else t.clone()


def build_decode_offload(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int) -> Callable[[], torch.Tensor]:
    """The same random inputs as `build_decode`, with the cache placed as the offload mode needs."""
    q, k, v, seq_lens = _decode_inputs(shape, device, dtype, _generator(device, seed))
    threads = shape.offload_threads or None
    if case.offload == "cpu":
        return _offload_closure(q, _host_copy(k), _host_copy(v), seq_lens, impl="offload_cpu", threads=threads)
    if case.offload == "stream":
        return _offload_closure(q, _host_copy(k), _host_copy(v), seq_lens, impl="offload_stream",
                                chunks=shape.offload_chunks, device_impl=case.device_impl)
    parts = split_cache(k, v, seq_lens, shape.offload_fraction)
    return _offload_closure(q, parts.device_k, parts.device_v, parts.device_lens, impl="offload_split",
                            host_k_cache=parts.host_k, host_v_cache=parts.host_v, host_seq_lens=parts.host_lens,
                            threads=threads, device_impl=case.device_impl)


def _offload_closure(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor,
                     **opts: object) -> Callable[[], torch.Tensor]:
    return lambda: decode(q, k, v, seq_lens, **opts)


def offload_case(kernel: str, mode: str) -> str:
    """The case that runs decode `kernel` with CPU offload `mode` (`none`: the kernel itself),
    as the kernel's case declares it (`Case.offload_variants`).

    `cpu` attends on the host alone, whichever kernel; `split` and `stream` attend the device's
    share with the kernel's implementation (triton or torch).
    """
    if mode not in OFFLOAD_MODES:
        raise ValueError(f"offload mode {mode!r} unknown; choose one of {OFFLOAD_MODES}")
    return REGISTRY.get(kernel).offload_variant(mode)


def triton_unavailable(device: torch.device) -> str | None:
    """Triton runs CUDA tensors natively and CPU tensors only in its interpreter."""
    if importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return "Triton on the CPU needs TRITON_INTERPRET=1 (python -m bench sets it when no GPU is visible)"
    return None


def tma_unavailable(device: torch.device) -> str | None:
    reason = triton_unavailable(device)
    if reason:
        return reason
    from kernels.triton_prefill import tma_unavailable as reason_on

    return reason_on(device)


_CUDA = ("cuda",)
_TRITON_HEAD_DIMS = (64, 128)  # the head sizes the Triton kernels are written and tested for
_TRITON = dict(family="triton", uses_triton=True, head_dims=_TRITON_HEAD_DIMS, check=triton_unavailable)
_SDPA = dict(family="sdpa")


def _offloads(impl: str) -> tuple[tuple[str, str], ...]:
    """The offload variants of a contiguous decode kernel: host-only, and split / stream with the
    kernel attending the device's share."""
    suffix = "" if impl == "triton" else "_torch"
    return (("cpu", "decode.offload_cpu"), ("split", f"decode.offload_split{suffix}"),
            ("stream", f"decode.offload_stream{suffix}"))


def _offload(mode: str, device_impl: str | None, extra: tuple[str, ...]) -> dict[str, object]:
    traits: dict[str, object] = dict(family="offload", offload=mode, device_impl=device_impl, extra_fields=extra,
                                     speed_contender=False)  # host sync every step: not graph-capturable
    if device_impl == "triton":
        traits.update(uses_triton=True, head_dims=_TRITON_HEAD_DIMS, check=triton_unavailable)
    return traits


# Adding a case is one entry here: its name, phase, impl, builder and traits.
REGISTRY = Registry(
    [
        Case("prefill.triton", "prefill", "triton", build_prefill, **_TRITON),
        Case("prefill.triton_tma", "prefill", "triton_tma", build_prefill, **{**_TRITON, "check": tma_unavailable}),
        Case("prefill.torch", "prefill", "torch", build_prefill, **_SDPA),
        Case("prefill.torch_math", "prefill", "torch_math", build_prefill, **_SDPA, speed_contender=False),
        Case("prefill.torch_flash", "prefill", "torch_flash", build_prefill, **_SDPA),
        Case("prefill.torch_efficient", "prefill", "torch_efficient", build_prefill, **_SDPA, devices=_CUDA),
        Case("prefill.torch_cudnn", "prefill", "torch_cudnn", build_prefill, **_SDPA, devices=_CUDA),
        Case("decode.triton", "decode", "triton", build_decode, **_TRITON, offload_variants=_offloads("triton")),
        Case("decode.triton_paged", "decode", "triton", build_decode, **_TRITON, layout="paged"),
        Case("decode.triton_tma", "decode", "triton_tma", build_decode, **{**_TRITON, "check": tma_unavailable}),
        Case("decode.torch", "decode", "torch", build_decode, **_SDPA, offload_variants=_offloads("torch")),
        Case("decode.torch_paged", "decode", "torch", build_decode, **_SDPA, layout="paged"),
        Case("decode.offload_cpu", "decode", "offload_cpu", build_decode_offload,
             **_offload("cpu", None, ("offload_threads",))),
        Case("decode.offload_split", "decode", "offload_split", build_decode_offload,
             **_offload("split", "triton", ("offload_fraction", "offload_threads"))),
        Case("decode.offload_split_torch", "decode", "offload_split", build_decode_offload,
             **_offload("split", "torch", ("offload_fraction", "offload_threads"))),
        Case("decode.offload_stream", "decode", "offload_stream", build_decode_offload,
             **_offload("stream", "triton", ("offload_chunks",))),
        Case("decode.offload_stream_torch", "decode", "offload_stream", build_decode_offload,
             **_offload("stream", "torch", ("offload_chunks",))),
        *linear_cases(),
        *layer_cases(),
    ]
)
