"""Speed of the serving simulation: the compiled step loop against the Python loop (with its fast
paths), on generated one-hour workloads of different shapes, same results checked bit for bit.

    python scripts/simulate_benchmark.py [--out results/simulate_bench] [--repeats 3]

Writes `bench.csv` and `README.md`: per case, requests, simulated steps, seconds per simulation
(best of the repeats; the compiled loop already compiled or loaded from its cache), steps per
second, and the speedup.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.carbon import serving
from bench.carbon.serving import simulate as sim
from bench.carbon.serving import simulate_compiled
from bench.common.markdown import table as table_md

REPO = Path(__file__).resolve().parents[1]


def cases():
    """(name, model, device, max batch, max prefill tokens, arrival s, prompt, output)."""
    rng = np.random.default_rng(0)
    n = 15_000  # a busy hour for one replica: chat-like prompts and answers
    yield ("chat hour, Llama-3-8B, H100", "llama3_8b", serving.datasheet("h100_sxm", 1), 256, 8192,
           np.sort(rng.uniform(0, 3600, n)), np.clip(rng.lognormal(6.5, 1.0, n), 1, 7000).astype(int),
           np.clip(rng.lognormal(5.0, 0.8, n), 1, 2000).astype(int))
    n = 3_000  # RAG-like: long prompts, short answers
    yield ("long prompts, Llama-3-8B, A100", "llama3_8b", serving.datasheet("a100_sxm", 1), 128, 8192,
           np.sort(rng.uniform(0, 3600, n)), np.clip(rng.lognormal(8.0, 0.4, n), 1, 7000).astype(int),
           np.clip(rng.lognormal(3.5, 0.6, n), 1, 2000).astype(int))
    n = 6_000  # sliding windows and preemptions: Gemma-3-12B with room for ~60k tokens of KV, bursts
    model = serving.PRESETS["gemma3_12b"]
    device = dataclasses.replace(serving.datasheet("h100_sxm", 1),
                                 memory_bytes=model.weight_bytes + 60_000 * model.kv_bytes_per_token)
    t = np.sort(np.concatenate([rng.uniform(0, 3600, n // 2)] +
                               [rng.uniform(s, s + 20, n // 2 // 15) for s in range(0, 3600, 240)]))
    yield ("bursts with preemption, Gemma-3-12B, H100", "gemma3_12b", device, 256, 8192, t,
           np.clip(rng.lognormal(7.0, 1.0, len(t)), 1, 7000).astype(int),
           np.clip(rng.lognormal(5.5, 0.8, len(t)), 1, 4000).astype(int))


def best_of(repeats: int, run) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "results" / "simulate_bench"))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not simulate_compiled.warm():
        raise SystemExit("the compiled loop is not available here (numba missing or failing to compile)")
    rows = []
    for name, model, device, max_batch, prefill, arrival, prompt, output in cases():
        cost = serving.StepCost.of(serving.PRESETS[model], device)

        def run():
            return sim.simulate(arrival, prompt, output, cost, max_batch, max_prefill_tokens=prefill)

        sim.COMPILED = True
        compiled_s, a = best_of(args.repeats, run)
        sim.COMPILED = False
        python_s, b = best_of(args.repeats, run)
        sim.COMPILED = True
        same = all(np.array_equal(getattr(a, f.name), getattr(b, f.name), equal_nan=True)
                   if isinstance(getattr(b, f.name), np.ndarray) else getattr(a, f.name) == getattr(b, f.name)
                   for f in dataclasses.fields(b) if f.compare)
        steps = len(a.step_end_s)
        rows.append({"case": name, "requests": len(arrival), "steps": steps, "preemptions": a.preemptions,
                     "python_s": round(python_s, 4), "compiled_s": round(compiled_s, 4),
                     "python_steps_per_s": round(steps / python_s), "compiled_steps_per_s": round(steps / compiled_s),
                     "speedup": round(python_s / compiled_s, 1), "same_results": same})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench.csv", index=False)
    from importlib.metadata import version
    env = (f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, Python "
           f"{platform.python_version()}, numba {version('numba')}, numpy {version('numpy')}, "
           f"{time.strftime('%Y-%m-%d')}")
    (out / "README.md").write_text(
        "# Serving simulation speed\n\n"
        f"Machine: {env}. Command: `python scripts/simulate_benchmark.py` (best of {args.repeats}).\n\n"
        "The compiled step loop (`bench/carbon/serving/simulate_compiled.py`, numba) against the Python loop "
        "with its fast paths (decode-only stretches in a tight loop or as arrays), on one replica over a "
        "generated hour; `same_results`: every field of the two results equal to the bit.\n\n"
        + table_md(table) + "\n")


if __name__ == "__main__":
    main()
