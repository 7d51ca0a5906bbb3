"""PyTorch attention: SDPA prefill with the backend pinned per impl, and SDPA decode over a
contiguous or paged KV cache with per-request lengths.

These are the baselines the Triton kernels are measured against, and the CPU fallback.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

# impl name -> SDPA backend pinned for it (None lets PyTorch choose).
PREFILL_BACKENDS: dict[str, SDPBackend | None] = {
    "torch": None,
    "torch_math": SDPBackend.MATH,
    "torch_flash": SDPBackend.FLASH_ATTENTION,
    "torch_efficient": SDPBackend.EFFICIENT_ATTENTION,
    "torch_cudnn": SDPBackend.CUDNN_ATTENTION,
}
# Backends PyTorch implements only for CUDA tensors (flash and math also run on the CPU).
CUDA_ONLY = ("torch_efficient", "torch_cudnn")


def prefill_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool,
    sm_scale: float | None,
    backend: SDPBackend | None,
) -> torch.Tensor:
    """SDPA forward; causal masks are aligned to the end so N < M behaves as decode-after-prefill."""
    n, m = q.shape[2], k.shape[2]
    gqa = q.shape[1] != k.shape[1]
    mask = None
    is_causal = False
    if causal:
        # SDPA's is_causal aligns the diagonal to the top-left; only equal for N == M.
        if n == m:
            is_causal = True
        else:
            # Imported here: torch.nn.attention.bias pulls in torch._dynamo (over a second of
            # start-up for every `python -m bench`, most of which never build a causal mask).
            from torch.nn.attention.bias import causal_lower_right

            mask = causal_lower_right(n, m)
    if backend is None:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=sm_scale, enable_gqa=gqa
        )
    with sdpa_kernel([backend]):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=is_causal, scale=sm_scale, enable_gqa=gqa
        )


def gather_pages(cache: torch.Tensor, block_table: torch.Tensor) -> torch.Tensor:
    """Paged cache `[P, page_size, Hkv, D]` + `block_table [B, max_pages]` -> `[B, Hkv, L, D]`."""
    pages = cache[block_table.long()]  # [B, max_pages, page_size, Hkv, D]
    b, n_pages, page_size, hkv, d = pages.shape
    return pages.reshape(b, n_pages * page_size, hkv, d).transpose(1, 2)


def decode_torch(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    seq_lens: torch.Tensor,
    *,
    block_table: torch.Tensor | None,
    sm_scale: float | None,
) -> torch.Tensor:
    """One query token per request against its first `seq_lens[b]` cached keys, through SDPA."""
    if block_table is not None:
        k, v = gather_pages(k_cache, block_table), gather_pages(v_cache, block_table)
    else:
        k, v = k_cache, v_cache
    cache_len = k.shape[2]
    positions = torch.arange(cache_len, device=q.device)
    valid = positions[None, :] < seq_lens.to(q.device)[:, None]  # [B, L], True = attend
    o = F.scaled_dot_product_attention(
        q.unsqueeze(2),
        k,
        v,
        attn_mask=valid[:, None, None, :],
        scale=sm_scale,
        enable_gqa=q.shape[1] != k.shape[1],
    )
    return o.squeeze(2)
