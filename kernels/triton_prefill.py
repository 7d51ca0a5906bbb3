"""Triton prefill attention: a FlashAttention-2 style forward pass.

Each program owns BLOCK_M query rows of one (batch, query head) and streams the keys and values
of its KV head (GQA: query head h reads KV head h // group) in BLOCK_N blocks, keeping an online
softmax in base 2 with the scale (times log2 e) folded into the exponent's multiply-add, fp32
accumulators, and the running max and sum per row. Causal masks are aligned to the end (query i
sees keys j <= i + M - N), so blocks wholly above the diagonal are never loaded and only the
blocks crossing it pay for masks; the longest row blocks are launched first.
Optionally writes the natural-log log-sum-exp of each row, for merging partial attentions.

`tma=True` (case `prefill.triton_tma`) compiles the same kernel with its q, k and v tiles loaded
through host tensor descriptors, which Hopper's TMA unit serves asynchronously; it needs
contiguous inputs and a GPU of compute capability 9.0 or newer (or the interpreter). It is a
separate case so that the speed table shows whether it beats the pointer kernel before it
becomes anyone's default.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from kernels.tuning import autotune

try:  # host-side TMA descriptors: Triton >= 3.3
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - older Triton: the pointer kernel only
    TensorDescriptor = None

LOG2E = 1.4426950408889634


def set_block_shapes(nargs: dict) -> None:
    """Autotuner pre-hook: a config's tile sizes become the TMA descriptors' block shapes (host
    descriptors carry their block shape, so each config tried must set its own)."""
    if TensorDescriptor is None or not isinstance(nargs["Q"], TensorDescriptor):
        return
    d = nargs["Q"].shape[-1]
    nargs["Q"].block_shape = [nargs["BLOCK_M"], d]
    nargs["K"].block_shape = [nargs["BLOCK_N"], d]
    nargs["V"].block_shape = [nargs["BLOCK_N"], d]


def autotune_configs() -> list[triton.Config]:
    # (BLOCK_M, BLOCK_N, warps, stages): the shapes that win on Hopper for head dims 64/128,
    # few enough that tuning (compile + time each) stays in seconds per shape bucket. The deeper
    # pipelines are for the TMA variant, whose copies need no registers; where one does not fit
    # in shared memory the autotuner drops it.
    table = [(128, 64, 4, 3), (128, 64, 8, 3), (128, 128, 8, 3), (128, 64, 4, 4), (128, 128, 8, 4),
             (128, 128, 8, 2), (64, 64, 4, 3), (64, 64, 4, 4), (128, 32, 4, 3), (128, 64, 4, 5), (64, 64, 4, 6)]
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s, pre_hook=set_block_shapes)
            for bm, bn, w, s in table]


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
def _load_kv(k_src, v_src, kv_row, start_n, cols, M, stride_kn, stride_vn,
             MASK_TAIL: tl.constexpr, TMA: tl.constexpr):
    """K^T `[HEAD_DIM, BLOCK_N]` and V `[BLOCK_N, HEAD_DIM]` of the keys from `start_n`.

    Pointer path: `k_src`/`v_src` point at this KV head's first key, tails are masked loads.
    TMA path: they are descriptors over the `[B * Hkv * M, HEAD_DIM]` view and `kv_row` is this
    head's first row, so a tail block runs into the next head's rows (or is zero-filled past the
    tensor's end): those keys are masked out of the scores by the caller, and their values are
    zeroed here so that no value of another head, finite or not, can reach this output."""
    if TMA:
        k = k_src.load([kv_row + start_n, 0]).T
        v = v_src.load([kv_row + start_n, 0])
        if MASK_TAIL:
            v = tl.where(cols[:, None] < M, v, 0.0)
    else:
        if MASK_TAIL:
            k = tl.load(k_src + start_n * stride_kn, mask=cols[None, :] < M, other=0.0)
            v = tl.load(v_src + start_n * stride_vn, mask=cols[:, None] < M, other=0.0)
        else:
            k = tl.load(k_src + start_n * stride_kn)
            v = tl.load(v_src + start_n * stride_vn)
    return k, v


@triton.jit
def _attend_block(acc, l_i, m_i, q, k_src, v_src, kv_row, start_n, offs_m, offs_n, M, diag_offset, qk_scale,
                  stride_kn, stride_vn, MASK_TAIL: tl.constexpr, MASK_CAUSAL: tl.constexpr,
                  DOT_PRECISION: tl.constexpr, TMA: tl.constexpr, BLOCK_N: tl.constexpr):
    start_n = tl.multiple_of(start_n, BLOCK_N)  # both loops step from multiples of BLOCK_N
    cols = start_n + offs_n
    k, v = _load_kv(k_src, v_src, kv_row, start_n, cols, M, stride_kn, stride_vn, MASK_TAIL, TMA)
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
    TMA: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
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

    if TMA:
        # Q, K, V are tensor descriptors over [B * H * len, HEAD_DIM]: Hopper's TMA unit copies
        # each tile to shared memory asynchronously, with no address math in the registers.
        q = Q.load([pid_bh * N + pid_m * BLOCK_M, 0])  # rows past N are never stored
        kv_row = (b * (H_Q // GROUP) + hk) * M
        k_src = K
        v_src = V
    else:
        q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qn + offs_d[None, :] * stride_qd
        q = tl.load(q_ptrs, mask=offs_m[:, None] < N, other=0.0)
        kv_row = 0
        k_src = K + b * stride_kb + hk * stride_kh + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
        v_src = V + b * stride_vb + hk * stride_vh + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd

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
        acc, l_i, m_i = _attend_block(acc, l_i, m_i, q, k_src, v_src, kv_row, start_n, offs_m, offs_n, M,
                                      diag_offset, qk_scale, stride_kn, stride_vn, False, False, DOT_PRECISION, TMA,
                                      BLOCK_N)
    for start_n in range(full_end, hi, BLOCK_N):
        acc, l_i, m_i = _attend_block(acc, l_i, m_i, q, k_src, v_src, kv_row, start_n, offs_m, offs_n, M,
                                      diag_offset, qk_scale, stride_kn, stride_vn, True, CAUSAL, DOT_PRECISION, TMA,
                                      BLOCK_N)

    out = acc / l_i[:, None]
    o_ptrs = O + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_on + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(O.dtype.element_ty), mask=offs_m[:, None] < N)
    if STORE_LSE:
        lse = (m_i + tl.math.log2(l_i)) / 1.4426950408889634  # back to natural log
        tl.store(LSE + pid_bh * N + offs_m, lse, mask=offs_m < N)


# Autotuned on GPUs; the interpreter (CPU) runs one small config, since tuning there would time
# dozens of interpreted launches.
PREFILL_TUNED = autotune(autotune_configs(), ["N_BUCKET", "M_BUCKET", "HEAD_DIM", "CAUSAL", "GROUP", "TMA"],
                          prune_configs_by={"early_config_prune": _prune})(_prefill_kernel)
INTERPRETER_CONFIG = {"BLOCK_M": 16, "BLOCK_N": 16}


def interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def check_device(t: torch.Tensor) -> None:
    if t.device.type == "cpu" and not interpreted():
        raise ValueError("Triton kernels on CPU tensors need TRITON_INTERPRET=1 set before `kernels` is imported "
                         "(slow: for checks); impl='torch' runs PyTorch's attention instead")


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


def tma_unavailable(device: torch.device) -> str | None:
    """Why the TMA variant cannot run on `device`, or None: it needs Triton's host tensor
    descriptors and, on a GPU, a Hopper or newer one (the interpreter emulates them on CPU)."""
    if TensorDescriptor is None:
        return f"Triton {triton.__version__} has no host tensor descriptors (triton.tools.tensor_descriptor)"
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 9:
        return f"TMA needs compute capability 9.0 or newer; {torch.cuda.get_device_name(device)} has " \
               f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}"
    return None


def tma_descriptor(t: torch.Tensor, impl: str, name: str, rows: int) -> "TensorDescriptor":
    """A descriptor over `t` `[..., len, D]` viewed as `[rows of all heads, D]`; TMA needs that
    view to exist (contiguous) and a 16-byte aligned base."""
    if not t.is_contiguous() or t.data_ptr() % 16:
        raise ValueError(f"{impl} 'triton_tma' needs contiguous, 16-byte aligned tensors; {name} is not "
                         "(use impl='triton' for strided views)")
    d = t.shape[-1]
    return TensorDescriptor.from_tensor(t.view(-1, d), [rows, d])


def prefill_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool, sm_scale: float | None,
                   return_lse: bool = False, tma: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """q `[B, Hq, N, D]`, k/v `[B, Hkv, M, D]` -> o `[B, Hq, N, D]` (and lse `[B, Hq, N]`, fp32).

    `tma=True` loads q, k and v through tensor descriptors (Hopper's TMA unit) instead of
    pointer arithmetic; same math, same results."""
    b, hq, n, d = q.shape
    hkv, m = k.shape[1], k.shape[2]
    if d not in (64, 128):
        raise ValueError(f"triton prefill supports head_dim 64 and 128, got {d}")
    scale = softmax_scale(sm_scale, d)
    check_device(q)
    if tma:
        reason = tma_unavailable(q.device)
        if reason:
            raise ValueError(f"prefill impl 'triton_tma': {reason}")
    o = torch.empty_like(q)
    lse = torch.empty((b, hq, n), device=q.device, dtype=torch.float32) if return_lse else o
    # fp32 inputs are for checks: IEEE dots match a float64 reference, tf32 would not.
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    on_cpu = q.device.type == "cpu"
    if tma:
        # Block shapes here are placeholders on a GPU, where each autotuned config sets its own.
        rows_m, rows_n = (INTERPRETER_CONFIG["BLOCK_M"], INTERPRETER_CONFIG["BLOCK_N"]) if on_cpu else (64, 64)
        q_in = tma_descriptor(q, "prefill impl", "q", rows_m)
        k_in, v_in = tma_descriptor(k, "prefill impl", "k", rows_n), tma_descriptor(v, "prefill impl", "v", rows_n)
    else:
        q_in, k_in, v_in = q, k, v

    def grid(meta):
        return (triton.cdiv(n, meta["BLOCK_M"]), b * hq)

    args = (q_in, k_in, v_in, o, lse, scale * LOG2E, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            hq, n, m, hq // hkv, _bucket(n), _bucket(m))
    meta = dict(HEAD_DIM=d, CAUSAL=causal, STORE_LSE=return_lse, DOT_PRECISION=precision, TMA=tma)
    if on_cpu:
        _prefill_kernel[grid](*args, **meta, **INTERPRETER_CONFIG)
    else:
        PREFILL_TUNED[grid](*args, **meta)
    return (o, lse) if return_lse else o
