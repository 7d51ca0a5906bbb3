"""Triton prefill attention: a FlashAttention-2 style forward pass.

Each program owns BLOCK_M query rows of one (batch, query head) and streams the keys and values
of its KV head (GQA: query head h reads KV head h // group) in BLOCK_N blocks, keeping an online
softmax in base 2 with the scale (times log2 e) folded into the exponent's multiply-add, fp32
accumulators, and the running max and sum per row. Causal masks are aligned to the end (query i
sees keys j <= i + M - N), so blocks wholly above the diagonal are never loaded and only the
blocks crossing it pay for masks; the longest row blocks are launched first.
Optionally writes the natural-log log-sum-exp of each row, for merging partial attentions.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634


def _configs() -> list[triton.Config]:
    # (BLOCK_M, BLOCK_N, warps, stages): the shapes that win on Hopper for head dims 64/128,
    # few enough that tuning (compile + time each) stays in seconds per shape bucket.
    table = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 4), (128, 128, 8, 4),
             (128, 128, 8, 2), (64, 64, 4, 3), (64, 64, 4, 4), (128, 32, 4, 3)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s) for bm, bn, w, s in table]


def _prune(configs, named_args, **kwargs):
    """Keep configs that fit the problem: no block taller than the sequence needs, and for head
    dim 128 no 128 x 128 tile with 4 warps (register spills on Hopper)."""
    n, d = named_args["N"], kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))
    limit = max(16, triton.next_power_of_2(n))
    kept = [c for c in configs if c.kwargs["BLOCK_M"] <= max(64, limit)
            and not (d == 128 and c.kwargs["BLOCK_M"] * c.kwargs["BLOCK_N"] >= 128 * 128 and c.num_warps == 4)]
    return kept or configs[:1]


@triton.jit
def softmax_step(acc, l_i, m_i, qk, v, qk_scale, DOT_PRECISION: tl.constexpr):
    """One online-softmax update with unscaled scores `qk` (masked entries -inf), `qk_scale`
    (> 0, in log2 units) and values `v`: rescale the running sum and accumulator to the new row
    max, then add this block. The scale is applied to each row's max, and to the scores inside
    the exponent's argument as one fused multiply-add, rather than by a separate multiply of
    the whole tile: on Hopper the softmax's scalar work, not the matmul, is often the limit
    (FlashAttention-3's analysis; not yet measured for this kernel)."""
    m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
    alpha = tl.math.exp2(m_i - m_new)
    p = tl.math.exp2(qk * qk_scale - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    # The rescaled accumulator is the dot's own accumulator (wgmma adds into it in place).
    acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, None], input_precision=DOT_PRECISION)
    return acc, l_i, m_new


@triton.jit
def _attend_block(acc, l_i, m_i, q, k_ptrs, v_ptrs, start_n, offs_m, offs_n, M, diag_offset, qk_scale,
                  MASK_TAIL: tl.constexpr, MASK_CAUSAL: tl.constexpr, DOT_PRECISION: tl.constexpr):
    cols = start_n + offs_n
    if MASK_TAIL:
        k = tl.load(k_ptrs, mask=cols[None, :] < M, other=0.0)
        v = tl.load(v_ptrs, mask=cols[:, None] < M, other=0.0)
    else:
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
    qk = tl.dot(q, k, input_precision=DOT_PRECISION)  # [BLOCK_M, BLOCK_N], unscaled
    if MASK_TAIL:
        qk = tl.where(cols[None, :] < M, qk, float("-inf"))
    if MASK_CAUSAL:
        qk = tl.where(cols[None, :] <= offs_m[:, None] + diag_offset, qk, float("-inf"))
    return softmax_step(acc, l_i, m_i, qk, v, qk_scale, DOT_PRECISION)


@triton.jit
def _prefill_kernel(
    Q, K, V, O, LSE, qk_scale,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    H_Q, N, M, GROUP, N_BUCKET, M_BUCKET,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, STORE_LSE: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if CAUSAL:
        # Causal work grows with the row block: launch the longest blocks first so the last
        # wave holds short ones instead of leaving SMs idle behind one long block.
        pid_m = tl.num_programs(0) - 1 - pid_m
    pid_bh = tl.program_id(1)
    b = pid_bh // H_Q
    h = pid_bh % H_Q
    hk = h // GROUP
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=offs_m[:, None] < N, other=0.0)
    k_base = K + b * stride_kb + hk * stride_kh
    v_base = V + b * stride_vb + hk * stride_vh
    k_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd  # [HEAD_DIM, BLOCK_N]
    v_ptrs = v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd  # [BLOCK_N, HEAD_DIM]

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    diag_offset = M - N  # end-aligned causal mask: row i sees columns j <= i + M - N
    if CAUSAL:
        # Columns below every row of this block need no mask; columns past the last row's
        # diagonal are never visited.
        full_end = tl.maximum(pid_m * BLOCK_M + diag_offset + 1, 0)
        hi = tl.minimum((pid_m + 1) * BLOCK_M + diag_offset, M)
    else:
        full_end = M
        hi = M
    full_end = tl.minimum(full_end, M) // BLOCK_N * BLOCK_N

    for start_n in range(0, full_end, BLOCK_N):
        acc, l_i, m_i = _attend_block(acc, l_i, m_i, q, k_ptrs + start_n * stride_kn, v_ptrs + start_n * stride_vn,
                                      start_n, offs_m, offs_n, M, diag_offset, qk_scale,
                                      False, False, DOT_PRECISION)
    for start_n in range(full_end, hi, BLOCK_N):
        acc, l_i, m_i = _attend_block(acc, l_i, m_i, q, k_ptrs + start_n * stride_kn, v_ptrs + start_n * stride_vn,
                                      start_n, offs_m, offs_n, M, diag_offset, qk_scale,
                                      True, CAUSAL, DOT_PRECISION)

    out = acc / l_i[:, None]
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=offs_m[:, None] < N)
    if STORE_LSE:
        lse = (m_i + tl.math.log2(l_i)) / 1.4426950408889634  # back to natural log
        tl.store(LSE + pid_bh * N + offs_m, lse, mask=offs_m < N)


# Autotuned on GPUs; the interpreter (CPU) runs one small config, since tuning there would time
# dozens of interpreted launches.
_prefill_tuned = triton.autotune(configs=_configs(), key=["N_BUCKET", "M_BUCKET", "HEAD_DIM", "CAUSAL", "GROUP"],
                                 prune_configs_by={"early_config_prune": _prune})(_prefill_kernel)
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_device(t: torch.Tensor) -> None:
    if t.device.type == "cpu" and not interpreted():
        raise ValueError("Triton kernels on CPU tensors need TRITON_INTERPRET=1 set before `kernels` is imported")


def softmax_scale(sm_scale: float | None, head_dim: int) -> float:
    """The scale applied to q.k, default 1/sqrt(d). It must be positive: the kernels scale each
    row's max of the raw scores, which is the max of the scaled ones only for a positive scale."""
    scale = sm_scale if sm_scale is not None else 1.0 / math.sqrt(head_dim)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"sm_scale must be a finite positive number, got {sm_scale}")
    return scale


def _bucket(n: int) -> int:
    """Autotune key: lengths in the same power-of-two bucket share a tuned config."""
    return triton.next_power_of_2(max(n, 16))


def prefill_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, sm_scale: float | None,
                   return_lse: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """q `[B, Hq, N, D]`, k/v `[B, Hkv, M, D]` -> o `[B, Hq, N, D]` (and lse `[B, Hq, N]`, fp32)."""
    b, hq, n, d = q.shape
    hkv, m = k.shape[1], k.shape[2]
    if d not in (64, 128):
        raise ValueError(f"triton prefill supports head_dim 64 and 128, got {d}")
    scale = softmax_scale(sm_scale, d)
    o = torch.empty_like(q)
    lse = torch.empty((b, hq, n), device=q.device, dtype=torch.float32) if return_lse else o
    # fp32 inputs are for checks: IEEE dots match a float64 reference, tf32 would not.
    precision = "ieee" if q.dtype == torch.float32 else "tf32"

    check_device(q)

    def grid(meta):
        return (triton.cdiv(n, meta["BLOCK_M"]), b * hq)

    args = (q, k, v, o, lse, scale * LOG2E, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            hq, n, m, hq // hkv, _bucket(n), _bucket(m))
    meta = dict(HEAD_DIM=d, CAUSAL=causal, STORE_LSE=return_lse, DOT_PRECISION=precision)
    if q.device.type == "cpu":
        _prefill_kernel[grid](*args, **meta, **INTERPRETER_CONFIG)
    else:
        _prefill_tuned[grid](*args, **meta)
    return (o, lse) if return_lse else o
