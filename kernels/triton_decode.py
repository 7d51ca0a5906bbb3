"""Triton decode attention: split-K "flash-decoding" over contiguous or paged KV caches.

Stage 1: a program per (request, KV head, KV split) attends all query heads of that KV head's
group at once (GQA packing: each K/V byte is read once, the group's queries form the rows of
one dot product), streaming its split of the request's cache in BLOCK_N tokens with an online
softmax in base 2; it writes a partial output and log-sum-exp per query head and split. Splits
past a request's length write an empty partial (log-sum-exp -inf).
Stage 2: a program per (request, query head) merges the partials by their log-sum-exps; with a
single split (large batch x KV heads) stage 1 writes the output itself and stage 2 is skipped.

The grid depends only on tensor shapes (batch, heads, cache capacity), never on `seq_lens`
values, so a decode step can be captured in a CUDA graph. On a GPU the split count is chosen
by timing the candidates on the first call of each shape (warm it up before capturing).
`tma=True` (case `decode.triton_tma`, contiguous caches) loads the K and V tiles through TMA
tensor descriptors instead of pointers.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import triton
import triton.language as tl
import triton.testing

from kernels.triton_prefill import (
    LOG2E,
    TensorDescriptor,
    check_device,
    softmax_scale,
    softmax_step,
    tma_descriptor,
    tma_unavailable,
)
from kernels.tuning import autotune

MIN_ROWS = 16  # tl.dot needs at least 16 rows: small groups are padded
SPLIT_ALIGN = 128  # split lengths are multiples of the largest BLOCK_N, so every config tiles them
MAX_SPLITS = 64
TUNE_SPLITS = True  # on a GPU, pick the split count by timing the candidates (first call per shape)


def set_block_shapes(nargs: dict) -> None:
    """Autotuner pre-hook: each config's BLOCK_N becomes the TMA descriptors' block rows."""
    if TensorDescriptor is None or not isinstance(nargs["K"], TensorDescriptor):
        return
    for name in ("K", "V"):
        nargs[name].block_shape = [nargs["BLOCK_N"], nargs[name].shape[-1]]


def autotune_configs() -> list[triton.Config]:
    return [triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=s, pre_hook=set_block_shapes)
            for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3, 4)]


@triton.jit
def _decode_split_kernel(
    Q, K, V, SEQ_LENS, TABLE, O_PART, LSE_PART, qk_scale,
    stride_qb, stride_qh, stride_qd,
    stride_kp, stride_kn, stride_kh, stride_kd,
    stride_vp, stride_vn, stride_vh, stride_vd,
    stride_tb, H_Q, GROUP, SPLIT_LEN, NUM_SPLITS, CAP_BUCKET,
    O, LSE, stride_ob, stride_oh, stride_od,
    HEAD_DIM: tl.constexpr, BLOCK_G: tl.constexpr, PAGED: tl.constexpr, PAGE_SIZE: tl.constexpr,
    DOT_PRECISION: tl.constexpr, DIRECT: tl.constexpr, STORE_LSE: tl.constexpr, TMA: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0)
    hk = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(SEQ_LENS + b)
    start = split * SPLIT_LEN
    end = tl.minimum(start + SPLIT_LEN, seq_len)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, HEAD_DIM)
    offs_n = tl.arange(0, BLOCK_N)
    heads = hk * GROUP + offs_g
    in_group = offs_g < GROUP
    q = tl.load(Q + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :] * stride_qd,
                mask=in_group[:, None], other=0.0)

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, HEAD_DIM], dtype=tl.float32)
    for start_n in range(start, end, BLOCK_N):
        pos = start_n + offs_n
        valid = pos < end
        if TMA:
            # Descriptors over the contiguous cache viewed as [B * Hkv * L, HEAD_DIM]: rows past
            # this request's end (its unused slots, or the next head's rows) are masked out of
            # the scores below and zeroed here, so nothing of theirs reaches the output.
            row = ((b.to(tl.int64) * stride_kp + hk * stride_kh) // HEAD_DIM + start_n).to(tl.int32)
            k = K.load([row, 0]).T
            v = tl.where(valid[:, None], V.load([row, 0]), 0.0)
        else:
            if PAGED:
                page = tl.load(TABLE + b * stride_tb + pos // PAGE_SIZE, mask=valid, other=0).to(tl.int64)
                k_rows = page * stride_kp + (pos % PAGE_SIZE) * stride_kn
                v_rows = page * stride_vp + (pos % PAGE_SIZE) * stride_vn
            else:
                k_rows = b.to(tl.int64) * stride_kp + pos * stride_kn
                v_rows = b.to(tl.int64) * stride_vp + pos * stride_vn
            k = tl.load(K + k_rows[None, :] + hk * stride_kh + offs_d[:, None] * stride_kd, mask=valid[None, :],
                        other=0.0)
            v = tl.load(V + v_rows[:, None] + hk * stride_vh + offs_d[None, :] * stride_vd, mask=valid[:, None],
                        other=0.0)
        qk = tl.dot(q, k, input_precision=DOT_PRECISION)  # [BLOCK_G, BLOCK_N], unscaled
        qk = tl.where(valid[None, :], qk, float("-inf"))
        acc, l_i, m_i = softmax_step(acc, l_i, m_i, qk, v, qk_scale, DOT_PRECISION)

    has_keys = l_i > 0
    out = acc / tl.where(has_keys, l_i, 1.0)[:, None]
    lse = tl.where(has_keys, m_i + tl.math.log2(tl.where(has_keys, l_i, 1.0)), float("-inf"))
    if DIRECT:
        # One split covers the whole cache: this is the answer, no merge pass needed.
        tl.store(O + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :] * stride_od,
                 out.to(O.dtype.element_ty), mask=in_group[:, None])
        if STORE_LSE:
            tl.store(LSE + b * H_Q + heads, lse / 1.4426950408889634, mask=in_group)
    else:
        part = (b * H_Q + heads) * NUM_SPLITS + split  # O_PART [B, Hq, S, D], LSE_PART [B, Hq, S]
        tl.store(O_PART + part[:, None] * HEAD_DIM + offs_d[None, :], out, mask=in_group[:, None])
        tl.store(LSE_PART + part, lse, mask=in_group)


@triton.jit
def _decode_merge_kernel(O_PART, LSE_PART, O, LSE, stride_ob, stride_oh, stride_od, H_Q, NUM_SPLITS,
                         HEAD_DIM: tl.constexpr, BLOCK_S: tl.constexpr, STORE_LSE: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, HEAD_DIM)
    in_range = offs_s < NUM_SPLITS
    row = (b * H_Q + h) * NUM_SPLITS
    lse = tl.load(LSE_PART + row + offs_s, mask=in_range, other=float("-inf"))
    m = tl.max(lse, 0)  # finite: seq_len >= 1 gives split 0 at least one key
    w = tl.math.exp2(lse - m)
    parts = tl.load(O_PART + (row + offs_s)[:, None] * HEAD_DIM + offs_d[None, :], mask=in_range[:, None], other=0.0)
    total = tl.sum(w, 0)
    out = tl.sum(w[:, None] * parts, 0) / total
    tl.store(O + b * stride_ob + h * stride_oh + offs_d * stride_od, out.to(O.dtype.element_ty))
    if STORE_LSE:
        tl.store(LSE + b * H_Q + h, (m + tl.math.log2(total)) / 1.4426950408889634)


SPLIT_TUNED = autotune(autotune_configs(), ["CAP_BUCKET", "BLOCK_G", "HEAD_DIM", "PAGED", "PAGE_SIZE", "DIRECT", "NUM_SPLITS",
                                     "TMA"])(
    _decode_split_kernel)
INTERPRETER_CONFIG = {"BLOCK_N": 16}


def _sm_count(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def plan_splits(batch: int, kv_heads: int, capacity: int, device: torch.device, num_splits: int | None = None) -> tuple[int, int]:
    """`(num_splits, split_len)` from shapes alone: enough programs to fill the GPU twice over,
    no split shorter than SPLIT_ALIGN tokens."""
    most = max(1, min(MAX_SPLITS, math.ceil(capacity / SPLIT_ALIGN)))
    if num_splits is None:
        num_splits = math.ceil(2 * _sm_count(device) / (batch * kv_heads))
    num_splits = max(1, min(int(num_splits), most))
    split_len = math.ceil(math.ceil(capacity / num_splits) / SPLIT_ALIGN) * SPLIT_ALIGN
    return math.ceil(capacity / split_len), split_len


# Split counts tried when tuning on a GPU (each normalised by `plan_splits`, so duplicates collapse).
SPLIT_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
CHOSEN_SPLITS: dict[tuple, int] = {}


# Split counts whose grid exceeds this many programs per SM are not tried: each candidate costs
# a full autotune of the kernel's configs, and past a few waves more splits only add merge work.
MAX_PROGRAMS_PER_SM = 8


def split_candidates(batch: int, kv_heads: int, capacity: int, device: torch.device) -> list[int]:
    """The distinct split counts a shape allows, the shape heuristic's first, then those up to
    MAX_PROGRAMS_PER_SM programs per SM."""
    out: list[int] = []
    most_programs = MAX_PROGRAMS_PER_SM * _sm_count(device)
    for requested in (None,) + SPLIT_CANDIDATES:
        n, _ = plan_splits(batch, kv_heads, capacity, device, requested)
        if n not in out and (requested is None or n == 1 or batch * kv_heads * n <= most_programs):
            out.append(n)
    return out


def choose_splits(key: tuple, candidates: list[int], time_ms: Callable[[int], float]) -> int:
    """The fastest candidate, timed once per key and remembered (like Triton's autotuner, this
    happens on the first call of a shape: in warm-up, outside any measurement window and before
    any CUDA-graph capture). Ties keep the earlier candidate, the heuristic's."""
    if key not in CHOSEN_SPLITS:
        times = {n: time_ms(n) for n in candidates}
        CHOSEN_SPLITS[key] = min(candidates, key=lambda n: times[n])
    return CHOSEN_SPLITS[key]


def _check_tma(device: torch.device, paged: bool) -> None:
    reason = tma_unavailable(device)
    if reason:
        raise ValueError(f"decode impl 'triton_tma': {reason}")
    if paged:
        raise ValueError("decode impl 'triton_tma' takes contiguous caches only (a page's rows of one head are "
                         "not one TMA box); use impl='triton' for paged caches")


def decode_triton(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, seq_lens: torch.Tensor, *,
                  block_table: torch.Tensor | None, sm_scale: float | None, num_splits: int | None = None,
                  return_lse: bool = False, tma: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """q `[B, Hq, D]` over contiguous `[B, Hkv, L, D]` or paged `[P, page, Hkv, D]` caches.

    `tma=True` (contiguous caches only) loads K and V tiles through TMA tensor descriptors."""
    b, hq, d = q.shape
    if d not in (64, 128):
        raise ValueError(f"triton decode supports head_dim 64 and 128, got {d}")
    check_device(q)
    scale = softmax_scale(sm_scale, d)
    paged = block_table is not None
    if tma:
        _check_tma(q.device, paged)
    if paged:
        page_size, hkv = k_cache.shape[1], k_cache.shape[2]
        capacity = block_table.shape[1] * page_size
        # paged layout [P, page, Hkv, D]: page, slot, head, dim
        k_strides = (k_cache.stride(0), k_cache.stride(1), k_cache.stride(2), k_cache.stride(3))
        v_strides = (v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), v_cache.stride(3))
        table, table_stride = block_table, block_table.stride(0)
    else:
        page_size, hkv, capacity = 1, k_cache.shape[1], k_cache.shape[2]
        # contiguous layout [B, Hkv, L, D]: batch, position, head, dim
        k_strides = (k_cache.stride(0), k_cache.stride(2), k_cache.stride(1), k_cache.stride(3))
        v_strides = (v_cache.stride(0), v_cache.stride(2), v_cache.stride(1), v_cache.stride(3))
        table, table_stride = seq_lens, 0  # unused
    group = hq // hkv
    if num_splits is None and q.device.type == "cuda" and TUNE_SPLITS:
        # Wave quantisation makes the best split count hard to predict from shapes: time them.
        key = (b, hkv, triton.next_power_of_2(capacity), d, paged, page_size, q.dtype, group, return_lse, tma)

        def time_ms(n: int) -> float:
            def run() -> object:
                return decode_triton(q, k_cache, v_cache, seq_lens, block_table=block_table, sm_scale=sm_scale,
                                     num_splits=n, return_lse=return_lse, tma=tma)

            run()  # compile and autotune the kernel configs first, so do_bench times only calls
            torch.cuda.synchronize(q.device)
            return triton.testing.do_bench(run, warmup=5, rep=25)

        if torch.cuda.is_current_stream_capturing():
            # Timing cannot run inside a capture: use the choice made in warm-up, or the heuristic.
            num_splits = CHOSEN_SPLITS.get(key)
        else:
            num_splits = choose_splits(key, split_candidates(b, hkv, capacity, q.device), time_ms)
    splits, split_len = plan_splits(b, hkv, capacity, q.device, num_splits)
    direct = splits == 1
    o = torch.empty_like(q)
    lse = torch.empty((b, hq), device=q.device, dtype=torch.float32) if return_lse else None
    # With one split the partials are the output: they are not allocated and nothing is merged.
    o_part = o if direct else torch.empty((b, hq, splits, d), device=q.device, dtype=torch.float32)
    lse_part = (lse if lse is not None else o_part) if direct else torch.empty((b, hq, splits), device=q.device,
                                                                                dtype=torch.float32)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    if tma:
        block_n = INTERPRETER_CONFIG["BLOCK_N"] if q.device.type == "cpu" else 64  # autotuned configs set their own
        k_in = tma_descriptor(k_cache, "decode impl", "k_cache", block_n)
        v_in = tma_descriptor(v_cache, "decode impl", "v_cache", block_n)
    else:
        k_in, v_in = k_cache, v_cache
    args = (q, k_in, v_in, seq_lens, table, o_part, lse_part, scale * LOG2E, *q.stride(), *k_strides,
            *v_strides, table_stride, hq, group, split_len, splits, triton.next_power_of_2(capacity),
            o, lse if lse is not None else o, *o.stride())
    meta = dict(HEAD_DIM=d, BLOCK_G=max(MIN_ROWS, triton.next_power_of_2(group)), PAGED=paged,
                PAGE_SIZE=page_size, DOT_PRECISION=precision, DIRECT=direct, STORE_LSE=return_lse, TMA=tma)
    grid = (b, hkv, splits)
    if q.device.type == "cpu":
        _decode_split_kernel[grid](*args, **meta, **INTERPRETER_CONFIG)
    else:
        SPLIT_TUNED[grid](*args, **meta)
    if not direct:
        _decode_merge_kernel[(b, hq)](o_part, lse_part, o, lse if lse is not None else o_part, *o.stride(), hq,
                                      splits, HEAD_DIM=d, BLOCK_S=max(2, triton.next_power_of_2(splits)),
                                      STORE_LSE=return_lse)
    return (o, lse) if return_lse else o
