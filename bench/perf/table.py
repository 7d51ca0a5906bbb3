"""Kernel speed on a GPU against the measured ceilings and PyTorch's SDPA backends.

    python -m bench.perf --out results/<gpu>_<date>      (needs a CUDA GPU)

Measures the copy bandwidth (bytes read + written) and the bf16 matmul rate of this GPU, then
times every prefill and decode implementation with CUDA graphs (`triton.testing.do_bench_cudagraph`,
median), after a warm-up that compiles and autotunes outside the timing. Writes `kernels.csv`
and `kernels.md`: TFLOP/s, GB/s, ratio to the best SDPA backend at the same shape, % of ceiling,
and a targets table. Rows are kept in `kernels_partial.csv` as they are timed, so a run stopped
by a time limit still leaves what it measured; `--phases` and `--head-dims` split a long run.
Time only; energy is what `python -m bench` measures.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
from pathlib import Path

import pandas as pd
import torch

from bench.common.files import atomic_write_text
from bench.common.markdown import table as markdown_table
from kernels import REGISTRY, Shape, triton_decode

PREFILL_TOKENS = 16384  # FlashAttention's benchmark: batch x seq_len fixed, 2048 / head_dim heads
DECODE_HEADS, DECODE_KV_HEADS = 32, 8  # Llama-3-8B's attention


def _bench_ms(fn) -> tuple[float, str]:
    """Median time of `fn` in ms, replayed from a CUDA graph where it can be captured."""
    import triton.testing

    fn()  # compile / autotune / choose a backend outside the graph
    torch.cuda.synchronize()
    try:
        return float(triton.testing.do_bench_cudagraph(fn, rep=200, return_mode="median")), "cuda_graph"
    except RuntimeError:  # not capturable: time launches with CUDA events instead
        torch.cuda.synchronize()
        return float(triton.testing.do_bench(fn, rep=200, return_mode="median")), "cuda_events"


def _bandwidth_ms(n_bytes: int) -> tuple[float, float]:
    """Times of a device copy (reads and writes `n_bytes` each) and of a reduction (reads them)."""
    src = torch.randn(n_bytes // 2, device="cuda", dtype=torch.bfloat16)
    dst = torch.empty_like(src)
    copy_ms, _ = _bench_ms(lambda: dst.copy_(src))
    # Decode mostly reads: a reduction over the same bytes is its fairer ceiling.
    read_ms, _ = _bench_ms(lambda: src.sum(dtype=torch.float32))
    return copy_ms, read_ms


def _matmul_ms(n: int) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    return _bench_ms(lambda: a @ b)[0]


def ceilings() -> dict[str, float]:
    """Copy GB/s (read + write), read GB/s and bf16 matmul TFLOP/s, measured here."""
    n_bytes, n = 4 * 2**30, 8192
    copy_ms, read_ms = _bandwidth_ms(n_bytes)  # buffers freed on return, before the matmul
    mm_ms = _matmul_ms(n)
    return {"copy_gb_per_s": 2 * n_bytes / copy_ms / 1e6, "read_gb_per_s": n_bytes / read_ms / 1e6,
            "matmul_tflop_per_s": 2 * n**3 / mm_ms / 1e9}


def split_choice(shape: Shape, paged: bool, chosen_before: set, chosen_now: dict, device: torch.device) -> dict[str, float]:
    """The Triton decode's split count at this shape: the one its tuner chose (the entry it
    added while this case ran) beside the shape heuristic's, to read where tuning mattered."""
    capacity = math.ceil(shape.context_len / shape.page_size) * shape.page_size if paged else shape.context_len
    new = [n for key, n in chosen_now.items() if key not in chosen_before]
    heuristic, _ = triton_decode.plan_splits(shape.batch_size, shape.kv_heads, capacity, device)
    return {"splits_chosen": float(new[0]) if len(new) == 1 else math.nan, "splits_heuristic": float(heuristic)}


def _time_case(name: str, shape: Shape, dtype: torch.dtype) -> dict[str, object]:
    case = REGISTRY.get(name)
    row: dict[str, object] = {"kernel": name, **case.traits(), **case.shape_fields(shape)}
    chosen_before = set(triton_decode.CHOSEN_SPLITS)
    reason = case.unsupported_reason(torch.device("cuda"))
    if reason:
        row["skipped"] = reason
        return row
    try:
        fn = case.build(shape, torch.device("cuda"), dtype, seed=0)
        ms, timing = _bench_ms(fn)
    except (RuntimeError, ValueError) as err:  # a pinned backend that does not take this shape
        row["skipped"] = str(err).splitlines()[0][:120]
        torch.cuda.empty_cache()
        return row
    row.update(time_ms=ms, timing=timing, tflop_per_s=case.flops(shape) / ms / 1e9,
               gb_per_s=case.min_bytes(shape, dtype) / ms / 1e6)
    if case.phase == "decode" and case.family == "triton":
        row.update(split_choice(shape, case.paged, chosen_before, triton_decode.CHOSEN_SPLITS, torch.device("cuda")))
    del fn
    torch.cuda.empty_cache()
    return row


def prefill_shapes(seq_lens: list[int], head_dim: int = 128) -> list[Shape]:
    heads = 2048 // head_dim
    return [Shape(batch_size=max(1, PREFILL_TOKENS // n), heads=heads, kv_heads=heads, head_dim=head_dim, seq_len=n,
                  causal=causal) for causal in (False, True) for n in seq_lens]


def decode_shapes(batches: list[int], contexts: list[int], head_dim: int = 128) -> list[Shape]:
    return [Shape(batch_size=b, heads=DECODE_HEADS, kv_heads=DECODE_KV_HEADS, head_dim=head_dim, context_len=length)
            for length in contexts for b in batches]


def case_names(phase: str) -> list[str]:
    """The cases of a phase that declare themselves speed contenders: not SDPA's math backend (a
    reference), not the CPU-offload cases (they synchronise with the host every step, so they
    cannot be graph-captured; the energy sweeps, `offload=...`, measure them)."""
    return [c.name for c in REGISTRY if c.phase == phase and c.speed_contender]


def with_families(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows with the `impl_family` trait, taken from the registry where a table predates it."""
    if "impl_family" in rows and rows["impl_family"].notna().all():
        return rows
    rows = rows.copy()
    known = rows["kernel"].map(lambda k: REGISTRY.get(k).family if k in REGISTRY else "custom")
    rows["impl_family"] = rows["impl_family"].fillna(known) if "impl_family" in rows else known
    return rows


def compare(rows: pd.DataFrame, ceil: dict[str, float]) -> pd.DataFrame:
    """Ratio to the fastest SDPA backend at the same shape and layout, and % of the ceiling."""
    rows = with_families(rows)
    shape_cols = [c for c in ("phase", "paged", "batch_size", "heads", "head_dim", "seq_len", "context_len", "causal")
                  if c in rows]
    sdpa = rows[rows["impl_family"] == "sdpa"].groupby(shape_cols, dropna=False)["time_ms"].min()
    best = rows.set_index(shape_cols).index.map(lambda key: sdpa.get(key, math.nan))
    rows["speedup_vs_best_sdpa"] = best / rows["time_ms"]
    # Prefill against the matmul rate; decode against the copy (read + write) and read bandwidths.
    prefill = rows["phase"] == "prefill"
    rows["pct_of_matmul"] = (100 * rows["tflop_per_s"] / ceil["matmul_tflop_per_s"]).where(prefill)
    rows["pct_of_copy_bw"] = (100 * rows["gb_per_s"] / ceil["copy_gb_per_s"]).where(~prefill)
    rows["pct_of_read_bw"] = (100 * rows["gb_per_s"] / ceil["read_gb_per_s"]).where(~prefill)
    return rows


# Decode points whose batch x context is at least this many tokens count as filling the GPU
# (32 x 4096: a 512 MB bf16 cache at 8 KV heads of dim 128) for the bandwidth target.
FILL_TOKENS = 32 * 4096
TARGET_HEAD_DIM = 128  # the targets are for head dim 128


def bars(rows: pd.DataFrame) -> pd.DataFrame:
    """Each Triton kernel against the speed targets, at its worst measured point (head dim 128):
    prefill at least as fast as SDPA's flash backend and within 15% of cuDNN; decode faster
    than the SDPA decode of the same layout everywhere, and at >= 85% of the copy bandwidth
    where batch x context fills the GPU. A target with no measured point is left unmet."""
    kernels = sorted(set(rows["kernel"])) if "kernel" in rows else []
    rows = with_families(rows) if "kernel" in rows else rows
    is_triton = rows["impl_family"] == "triton" if "impl_family" in rows else pd.Series(False, index=rows.index)
    triton = {phase: set(rows.loc[is_triton & (rows["phase"] == phase), "kernel"]) for phase in ("prefill", "decode")}
    rows = rows[rows["head_dim"] == TARGET_HEAD_DIM] if "head_dim" in rows else rows
    rows = rows[rows["time_ms"].notna()] if "time_ms" in rows else rows.iloc[0:0]
    out: list[dict[str, object]] = []

    def worst(kernel: str, target: str, values: pd.Series, points: pd.DataFrame, bound: float, strict: bool = False):
        values = values.dropna()
        if values.empty:
            out.append(dict(kernel=kernel, target=target, worst=math.nan, at="not measured", met=False))
            return
        at = points.loc[values.idxmin()]
        fields = ("batch_size", "seq_len", "causal") if at.get("phase") == "prefill" else ("batch_size", "context_len")
        where = ", ".join(f"{c}={at[c]}" for c in fields if c in at)
        low = float(values.min())
        out.append(dict(kernel=kernel, target=target, worst=low, at=where, met=low > bound if strict else low >= bound))

    shape = ["batch_size", "seq_len", "causal"]
    prefill = rows[rows["phase"] == "prefill"].set_index(shape) if len(rows) else rows
    for kernel in (k for k in kernels if k in triton["prefill"]):
        mine = prefill[prefill["kernel"] == kernel]
        for backend, bound, label in (("torch_flash", 1.0, ">= 1.00x SDPA flash"), ("torch_cudnn", 0.85, ">= 0.85x SDPA cuDNN")):
            ref = prefill[prefill["impl"] == backend]["time_ms"]
            ratio = (ref / mine["time_ms"]).reindex(mine.index)
            worst(kernel, label, ratio.reset_index(drop=True), mine.reset_index(), bound)
    decode = rows[rows["phase"] == "decode"].reset_index(drop=True) if len(rows) else rows
    for kernel in (k for k in kernels if k in triton["decode"]):
        mine = decode[decode["kernel"] == kernel]
        worst(kernel, "> 1.00x SDPA decode, every point", mine["speedup_vs_best_sdpa"], decode, 1.0, strict=True)
        full = mine[mine["batch_size"] * mine["context_len"] >= FILL_TOKENS]
        worst(kernel, f">= 85% of copy bandwidth (batch x context >= {FILL_TOKENS})", full["pct_of_copy_bw"], decode, 85.0)
    return pd.DataFrame(out, columns=["kernel", "target", "worst", "at", "met"])


def markdown(frame: pd.DataFrame) -> str:
    return markdown_table(frame) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the table (kernels.csv, kernels.md)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[4096, 8192, 16384])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--head-dims", type=int, nargs="+", default=[128, 64])
    parser.add_argument("--phases", nargs="+", choices=["prefill", "decode"], default=["prefill", "decode"])
    parser.add_argument("--name", default="kernels", help="file stem: <name>.csv, <name>.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    dtype = torch.bfloat16
    ceil = ceilings()
    print(f"ceilings: copy {ceil['copy_gb_per_s']:.0f} GB/s, read {ceil['read_gb_per_s']:.0f} GB/s, "
          f"bf16 matmul {ceil['matmul_tflop_per_s']:.0f} TFLOP/s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    timed: list[dict[str, object]] = []
    for d in args.head_dims:
        shapes = {"prefill": prefill_shapes(args.seq_lens, d), "decode": decode_shapes(args.batches, args.contexts, d)}
        for phase in args.phases:
            for shape in shapes[phase]:
                timed += [_time_case(name, shape, dtype) for name in case_names(phase)]
                # Every shape's rows are kept as they come: a run cut short still has them.
                atomic_write_text(args.out / f"{args.name}_partial.csv", pd.DataFrame(timed).to_csv(index=False))
    rows = pd.DataFrame(timed)
    rows = compare(rows, ceil)
    import triton

    rows["device"] = torch.cuda.get_device_name()
    rows["date"] = dt.date.today().isoformat()
    rows["torch_version"], rows["triton_version"] = torch.__version__, triton.__version__
    for name, value in ceil.items():
        rows[f"ceiling_{name}"] = value
    atomic_write_text(args.out / f"{args.name}.csv", rows.to_csv(index=False))
    cols = ["kernel", "head_dim", "batch_size", "seq_len", "context_len", "causal", "time_ms", "tflop_per_s", "gb_per_s",
            "speedup_vs_best_sdpa", "pct_of_matmul", "pct_of_copy_bw", "pct_of_read_bw", "splits_chosen",
            "splits_heuristic"]
    cols = [c for c in cols if c in rows]
    header = (f"# Kernel speed on {rows['device'][0]}, {rows['date'][0]}\n\ntorch {torch.__version__}, Triton "
              f"{triton.__version__}, bf16, CUDA-graph medians. Ceilings measured here: copy "
              f"{ceil['copy_gb_per_s']:.0f} GB/s (read + write), read {ceil['read_gb_per_s']:.0f} GB/s, matmul {ceil['matmul_tflop_per_s']:.0f} TFLOP/s.\n\n")
    verdict = bars(rows)
    targets = (f"## Targets (head dim {TARGET_HEAD_DIM}, each kernel at its worst point)\n\n" + markdown(verdict)
               + "\n## Every point\n\n")
    atomic_write_text(args.out / f"{args.name}.md", header + targets + markdown(rows[cols]))
    (args.out / f"{args.name}_partial.csv").unlink(missing_ok=True)
    print(verdict.round(3).to_string(index=False))
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(rows[cols + (["skipped"] if "skipped" in rows else [])].round(3).to_string(index=False))


if __name__ == "__main__":
    main()
