"""Synthetic measured points of a decoder layer and its parts on a fake device with known
rooflines: each part costs its roofline, a layer costs its parts plus a known overhead (with, in
`profile_with_kv()`, a known cost per KV-cache element a decode layer reads); work is counted by
the registered cases themselves. Built once per test session (`profile()`, `profile_with_kv()`)."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import torch

from bench.profile import build
from kernels import REGISTRY, Shape
from kernels.arch import ARCHS

DIMS = ARCHS["cpu_small"]
DTYPE = "float16"  # 2 bytes, as the serving model counts
METHOD = "cpu=model:process_cpu_time_x_tdp_per_core"
# (flop/s, bytes/s, overhead s) by op or attention case; energy E = E_FLOP f + E_BYTE b + P0 t.
TRUE_TIME = {"linear": (1e11, 2e11, 20e-6), "prefill.torch": (3e10, 5e9, 10e-6), "decode.torch": (2e10, 1e10, 30e-6),
             "decode.torch_paged": (1.5e10, 8e9, 40e-6)}
E_FLOP, E_BYTE, P0 = 1e-11, 1e-10, 4.0
OVERHEAD_T = (3e-4, 2e-8)  # c0_s, c_elem_s (per tokens x hidden)
OVERHEAD_E = (1e-3, 8e-8)
# Per KV-cache element a decode layer reads (c_kv_s, e_kv_j): at batch 16 and context 1,024 a
# fifth of the layer's time, so a fit that misses it misses by more than the target.
OVERHEAD_KV = (1e-10, 4e-10)
NOISE = 0.005


def shape(batch: int, length: int, phase: str) -> Shape:
    kw = {"seq_len": length} if phase == "prefill" else {"context_len": length}
    return Shape(batch, DIMS.heads, DIMS.kv_heads, DIMS.head_dim, hidden=DIMS.hidden, ffn=DIMS.ffn, **kw)


def kv_elements(s: Shape, phase: str) -> float:
    """K and V of every request's cached context (decode); prefill reads no cache."""
    return 2.0 * s.batch_size * s.context_len * s.kv_heads * s.head_dim if phase == "decode" else 0.0


def true_cost(name: str, s: Shape, kv: tuple[float, float] = (0.0, 0.0)) -> tuple[float, float]:
    case = REGISTRY.get(name)
    if case.op == "layer":
        parts = [true_cost(n, ps) for n, ps in case.parts(s)]
        elements, kv_read = case.tokens(s) * s.hidden, kv_elements(s, case.phase)
        return (sum(t for t, _ in parts) + OVERHEAD_T[0] + OVERHEAD_T[1] * elements + kv[0] * kv_read,
                sum(e for _, e in parts) + OVERHEAD_E[0] + OVERHEAD_E[1] * elements + kv[1] * kv_read)
    rate, bw, ovh = TRUE_TIME["linear" if case.op.startswith("linear.") else name]
    f, b = case.flops(s), case.min_bytes(s, getattr(torch, DTYPE))
    t = max(f / rate, b / bw) + ovh
    return t, E_FLOP * f + E_BYTE * b + P0 * t


def point(name: str, s: Shape, rng: np.random.Generator, kv: tuple[float, float] = (0.0, 0.0)) -> dict[str, object]:
    case = REGISTRY.get(name)
    t, e = true_cost(name, s, kv)
    t, e = t * (1 + NOISE * rng.standard_normal()), e * (1 + NOISE * rng.standard_normal())
    used = case.shape_fields(s)
    return {"key": f"{name}-{sorted(used.items())}", "created_utc": "2026-12-03T00:00:00+00:00", "kernel": name,
            **case.traits(), "device": "cpu", "dtype": DTYPE,
            **{k: (v if k in used else None) for k, v in dataclasses.asdict(s).items()},
            "flops_per_call": case.flops(s), "min_bytes_per_call": case.min_bytes(s, getattr(torch, DTYPE)),
            "tokens_per_call": case.tokens(s), "time_per_call_s": t, "time_method": "perf_counter (synthetic)",
            "host_energy_per_call_j": e, "host_energy_method": METHOD, "energy_per_call_j_incl_model": e,
            "energy_incl_model_method": METHOD, "quality": "ok", "env_device_name": "Fake CPU",
            "env_torch_version": "2.13.0"}


def points(decode_batches: tuple[int, ...] = (1, 4), kv: tuple[float, float] = (0.0, 0.0)) -> pd.DataFrame:
    """Linear cases at 3 token counts per phase (6 points per projection; decode also at each of
    `decode_batches`); attention and layer cases at 4 shapes (the fewest a roofline and a left-out
    overhead fit take; decode: `decode_batches` x 2 contexts), layers with `kv` per KV element read."""
    rng = np.random.default_rng(5)
    rows = []
    for phase, linear_lengths, lengths, batches in (("prefill", (64,), (64, 256), (1, 4)),
                                                    ("decode", (1,), (256, 1024), decode_batches)):
        linear_batches = sorted({1, 2, 4, *batches}) if phase == "decode" else (1, 2, 4)
        for p in ("qkv", "o", "gate_up", "down"):
            rows += [point(f"gemm.{p}.{phase}", shape(b, n, phase), rng) for b in linear_batches for n in linear_lengths]
        attention = ("prefill.torch",) if phase == "prefill" else ("decode.torch", "decode.torch_paged")
        layers = ("layer.prefill",) if phase == "prefill" else ("layer.decode", "layer.decode_paged")
        for name in attention + layers:
            rows += [point(name, shape(b, n, phase), rng, kv) for b in batches for n in lengths]
    return pd.DataFrame(rows)


@functools.cache
def profile() -> build.Profile:
    return build.build(points(), "fake-cpu", source="synthetic")


@functools.cache
def profile_with_kv(kv: tuple[float, float] = OVERHEAD_KV) -> build.Profile:
    """Decode layers at 3 batches x 2 contexts (6 points: enough to weigh the KV term) costing
    `kv` per KV-cache element read beyond the base overhead (`points((1, 4, 16), kv)`)."""
    return build.build(points((1, 4, 16), kv), "fake-cpu-kv", source="synthetic")
