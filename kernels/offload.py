"""CPU-offload decode: put the host's idle cores and memory to work (the Reuse pillar).

Three ways to run one decode step when (part of) the KV cache lives in host memory:

- `offload_cpu`: the whole cache is in host memory and the host CPU computes attention
  (torch on the CPU, thread count configurable); only q and o cross PCIe.
- `offload_split`: each request's oldest tokens are in host memory, its newest on the device.
  The device attends its part while the host attends the rest, and the two partial outputs are
  merged by their log-sum-exps: exact, not an approximation.
- `offload_stream`: the whole cache is in (pinned) host memory and is streamed to the device
  every step in groups of requests, the copy of group i+1 overlapping attention over group i.

On a machine without a GPU the device *is* the host: the same code runs on CPU tensors, which
is how CI checks the math. Host attention computes in float32 whatever the cache dtype (CPU
half-precision matmul is slow or missing on many parts), and requests may have empty parts
(a fraction of 0 or 1, or a 1-token request split two ways): an empty part has log-sum-exp -inf
and weight 0.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

DEVICE_IMPLS = ("auto", "triton", "torch")


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """Run the body with `threads` intra-op CPU threads (None or 0: leave PyTorch's setting)."""
    if not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def attention_lse_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor,
                        sm_scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode attention with its log-sum-exp, in float32 on the tensors' device.

    q `[B, Hq, D]`, contiguous k/v `[B, Hkv, L, D]`, `seq_lens [B]` (0 allowed). Returns
    `o [B, Hq, D]` float32 (0 for empty requests) and natural-log `lse [B, Hq]` (-inf for empty).
    """
    b, hq, d = q.shape
    hkv, cap = k.shape[1], k.shape[2]
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(d)
    qg = q.reshape(b, hkv, hq // hkv, d).float() * scale  # GQA: the group's queries share K/V
    scores = torch.matmul(qg, k.float().transpose(-1, -2))  # [B, Hkv, G, L]
    valid = torch.arange(cap, device=k.device)[None, :] < seq_lens.to(k.device).long()[:, None]
    scores.masked_fill_(~valid[:, None, None, :], float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # -inf where a request has no keys
    probs = torch.exp(scores - torch.where(torch.isfinite(lse), lse, 0.0)[..., None])
    o = torch.matmul(probs, v.float())
    return o.reshape(b, hq, d), lse.reshape(b, hq)


def merge_lse(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge partial attention outputs `(o [B,H,D], lse [B,H])` over disjoint key sets.

    Exact: o = sum_i exp(lse_i - lse) o_i with lse = log sum_i exp(lse_i). Parts with lse -inf
    weigh 0 (their o may be anything finite or not).
    """
    lses = torch.stack([lse.float() for _, lse in parts])  # [P, B, H]
    lse = torch.logsumexp(lses, dim=0)
    weights = torch.exp(lses - torch.where(torch.isfinite(lse), lse, 0.0))
    out = torch.zeros_like(parts[0][0], dtype=torch.float32)
    for (o, _), w in zip(parts, weights):
        out += torch.where(w[..., None] > 0, o.float() * w[..., None], 0.0)
    return out, lse


def _device_attention(impl: str, device: torch.device) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`(q, k, v, lens, sm_scale) -> (o, lse)` on `device`: Triton on CUDA by default, torch
    elsewhere. Lengths must be >= 1 for Triton (callers clamp and mask empty parts)."""
    if impl == "auto":
        impl = "triton" if device.type == "cuda" else "torch"
    if impl == "torch":
        return attention_lse_torch
    from kernels.triton_decode import decode_triton

    def run(q, k, v, lens, sm_scale):
        return decode_triton(q, k, v, lens, block_table=None, sm_scale=sm_scale, return_lse=True)

    return run


def _check_impl(device_impl: str) -> None:
    if device_impl not in DEVICE_IMPLS:
        raise ValueError(f"device_impl {device_impl!r} unknown; choose one of {DEVICE_IMPLS}")


def _require_host(name: str, t: torch.Tensor) -> None:
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be in host memory (a CPU tensor) for CPU offload; it is on {t.device}")


def _to_host(q: torch.Tensor) -> torch.Tensor:
    """q in host memory; from a GPU, through a pinned buffer so the copy is a plain DMA."""
    if q.device.type == "cpu":
        return q
    host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
    host.copy_(q)  # synchronises with the stream that produced q
    return host


def decode_offload_cpu(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor, *,
                       block_table: torch.Tensor | None, sm_scale: float | None,
                       threads: int | None = None) -> torch.Tensor:
    """Host-CPU attention over a host cache `[B, Hkv, L, D]`; q and o stay on q's device."""
    if block_table is not None:
        raise ValueError("offload_cpu supports contiguous caches only (block_table must be None)")
    _require_host("k_cache", k_cache)
    _require_host("v_cache", v_cache)
    q_host = _to_host(q)
    with cpu_threads(threads):
        o, _ = attention_lse_torch(q_host, k_cache, v_cache, seq_lens.cpu(), sm_scale)
    o = o.to(q.dtype)
    if q.device.type == "cpu":
        return o
    return o.pin_memory().to(q.device, non_blocking=True)


@dataclass(frozen=True)
class SplitCache:
    """A contiguous cache split per request: tokens `[0, host_lens[b])` in host memory and
    `[host_lens[b], seq_lens[b])` on the device, each part left-aligned in its own tensor."""

    device_k: torch.Tensor  # [B, Hkv, Ld, D] on the device
    device_v: torch.Tensor
    device_lens: torch.Tensor  # [B] int32 on the device
    host_k: torch.Tensor  # [B, Hkv, Lh, D] on the CPU (pinned when the device is a GPU)
    host_v: torch.Tensor
    host_lens: torch.Tensor  # [B] int32 on the CPU


def host_share(seq_lens: torch.Tensor, fraction: float) -> torch.Tensor:
    """Tokens of each request kept on the host: `round(fraction x seq_len)`, the oldest ones."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"offload fraction must be in [0, 1], got {fraction}")
    return torch.round(seq_lens.cpu().double() * fraction).to(torch.int32)


def split_cache(k: torch.Tensor, v: torch.Tensor, seq_lens: torch.Tensor, fraction: float) -> SplitCache:
    """Split contiguous caches `[B, Hkv, L, D]` (on the device) by `host_share`."""
    lens = seq_lens.cpu().to(torch.int32)
    host_lens = host_share(lens, fraction)
    device_lens = lens - host_lens
    b, hkv, _, d = k.shape
    # Capacities of at least 1 keep every tensor non-empty; empty parts are masked by length.
    cap_h, cap_d = max(1, int(host_lens.max())), max(1, int(device_lens.max()))
    pin = k.device.type == "cuda"

    def part(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        host = torch.randn((b, hkv, cap_h, d), dtype=cache.dtype, pin_memory=pin)
        dev = torch.randn((b, hkv, cap_d, d), dtype=cache.dtype, device=cache.device)
        for r in range(b):
            h, n = int(host_lens[r]), int(lens[r])
            host[r, :, :h] = cache[r, :, :h].cpu()
            dev[r, :, : n - h] = cache[r, :, h:n]
        return host, dev

    host_k, device_k = part(k)
    host_v, device_v = part(v)
    return SplitCache(device_k, device_v, device_lens.to(k.device), host_k, host_v, host_lens)


def decode_offload_split(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor, *,
                         block_table: torch.Tensor | None, sm_scale: float | None,
                         host_k_cache: torch.Tensor, host_v_cache: torch.Tensor, host_seq_lens: torch.Tensor,
                         threads: int | None = None, device_impl: str = "auto") -> torch.Tensor:
    """Device part (`k_cache`, `v_cache`, `seq_lens`, on q's device) and host part (`host_*`)
    attended concurrently and merged by log-sum-exp. Either part of a request may be empty."""
    if block_table is not None:
        raise ValueError("offload_split supports contiguous caches only (block_table must be None)")
    _check_impl(device_impl)
    _require_host("host_k_cache", host_k_cache)
    _require_host("host_v_cache", host_v_cache)
    if host_k_cache.shape != host_v_cache.shape or host_k_cache.shape[:2] != k_cache.shape[:2] \
            or host_k_cache.shape[3] != k_cache.shape[3]:
        raise ValueError(f"host cache {tuple(host_k_cache.shape)} must match the device cache "
                         f"{tuple(k_cache.shape)} in batch, kv heads and head_dim")
    if host_seq_lens.shape != seq_lens.shape:
        raise ValueError(f"host_seq_lens must have shape {tuple(seq_lens.shape)}; got {tuple(host_seq_lens.shape)}")
    on_gpu = q.device.type == "cuda"
    # q reaches the host on a side stream, so the host need not wait for the device's work.
    q_host = q
    if on_gpu:
        side = torch.cuda.Stream(q.device)
        side.wait_stream(torch.cuda.current_stream(q.device))
        q_host = torch.empty(q.shape, dtype=q.dtype, pin_memory=True)
        with torch.cuda.stream(side):
            q_host.copy_(q, non_blocking=True)
            q_ready = torch.cuda.Event()
            q_ready.record(side)
    # Launch the device part first: on a GPU it runs while the host computes its part.
    attend = _device_attention(device_impl, q.device)
    device_empty = seq_lens <= 0
    o_dev, lse_dev = attend(q, k_cache, v_cache, torch.clamp(seq_lens, min=1).to(torch.int32), sm_scale)
    lse_dev = torch.where(device_empty[:, None], float("-inf"), lse_dev)
    if on_gpu:
        q_ready.synchronize()
    with cpu_threads(threads):
        o_host, lse_host = attention_lse_torch(q_host, host_k_cache, host_v_cache, host_seq_lens.cpu(), sm_scale)
    if on_gpu:
        o_host = o_host.pin_memory().to(q.device, non_blocking=True)
        lse_host = lse_host.pin_memory().to(q.device, non_blocking=True)
    o, _ = merge_lse([(o_dev, lse_dev), (o_host, lse_host)])
    return o.to(q.dtype)


def decode_offload_stream(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor, *,
                          block_table: torch.Tensor | None, sm_scale: float | None,
                          chunks: int = 4, device_impl: str = "auto") -> torch.Tensor:
    """Host cache `[B, Hkv, L, D]` (pinned, for asynchronous DMA) copied to q's device every
    step in `chunks` groups of requests on a copy stream; each group is attended as soon as it
    lands, so copying group i+1 overlaps attention over group i.

    Groups split the batch, not the sequence: a batch slice of a contiguous cache is one
    contiguous block, which the DMA engine copies asynchronously, while a sequence slice is
    strided and PyTorch would stage it through pageable memory synchronously. With one request
    there is one group and no overlap.
    """
    if block_table is not None:
        raise ValueError("offload_stream supports contiguous caches only (block_table must be None)")
    _check_impl(device_impl)
    _require_host("k_cache", k_cache)
    _require_host("v_cache", v_cache)
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    b = q.shape[0]
    per_chunk = math.ceil(b / min(chunks, b))
    lens = seq_lens.to(q.device)
    attend = _device_attention(device_impl, q.device)
    on_gpu = q.device.type == "cuda"
    copy_stream = torch.cuda.Stream(q.device) if on_gpu else None
    compute = torch.cuda.current_stream(q.device) if on_gpu else None
    if on_gpu:
        copy_stream.wait_stream(compute)
    outs = []
    for start in range(0, b, per_chunk):
        rows = slice(start, start + per_chunk)
        if on_gpu:
            with torch.cuda.stream(copy_stream):
                k = k_cache[rows].to(q.device, non_blocking=True)
                v = v_cache[rows].to(q.device, non_blocking=True)
            compute.wait_stream(copy_stream)
            # Allocated on the copy stream, used and freed on this one.
            k.record_stream(compute)
            v.record_stream(compute)
        else:
            k, v = k_cache[rows], v_cache[rows]
        o, _ = attend(q[rows], k, v, lens[rows].to(torch.int32), sm_scale)
        outs.append(o)
    return torch.cat(outs).to(q.dtype)
