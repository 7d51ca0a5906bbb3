"""`python -m bench.fidelity.gpu --results DIR --out FILE`: the fidelity checks on a real GPU,
next to the emulator's table: the energy counter's update period (polled while idle), the
protocol's CV at three shapes of a measured sweep (shortest, median and longest call), and the
counter against integrated instant power (the recorder's cross-check) at every point. Observe
only: nothing on the GPU is changed."""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from bench.common.files import atomic_write_text
from bench.common.markdown import table
from bench.measure.meters.nvml import MJ_PER_J

TARGET_CV = 0.01  # what the protocol holds on the emulator (results/fidelity)
COLUMNS = ["kernel", "batch_size", "seq_len", "context_len", "launch", "time_per_call_s", "gpu_energy_per_call_j",
           "gpu_energy_per_call_j_cv", "time_per_call_s_cv", "gpu_rel_error_max", "gpu_updates_per_window_min",
           "gpu_crosscheck_rel_diff", "quality"]


def counter_period(nvml: Any, handle: Any, seconds: float = 2.0, clock: Callable[[], float] = time.perf_counter,
                   sleep: Callable[[float], None] = time.sleep) -> dict[str, float]:
    """How often the total-energy counter changes, polled every 0.5 ms for `seconds`."""
    changes: list[float] = []
    last = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    end = clock() + seconds
    while clock() < end:
        value = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        if value != last:
            changes.append(clock())
            last = value
        sleep(0.0005)
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    if not gaps:
        return {"updates": len(changes), "period_s_median": float("nan"), "period_s_min": float("nan"),
                "period_s_max": float("nan")}
    return {"updates": len(changes), "period_s_median": statistics.median(gaps), "period_s_min": min(gaps),
            "period_s_max": max(gaps), "counter_resolution_j": 1 / MJ_PER_J}


def three_shapes(points: pd.DataFrame) -> pd.DataFrame:
    """The points with the shortest, the median and the longest call."""
    ordered = points.sort_values("time_per_call_s").reset_index(drop=True)
    picks = sorted({0, len(ordered) // 2, len(ordered) - 1}) if len(ordered) else []
    return ordered.iloc[picks]


def report(points: pd.DataFrame, period: dict[str, float] | None) -> str:
    cols = [c for c in COLUMNS if c in points]
    shapes = three_shapes(points)
    cvs = shapes.get("gpu_energy_per_call_j_cv", pd.Series(dtype=float))
    cross = points.get("gpu_crosscheck_rel_diff", pd.Series(dtype=float)).dropna()
    lines = ["# Energy-protocol fidelity on this GPU", ""]
    if period is not None:
        lines += [f"- energy counter: {period['updates']} updates in the idle poll, period median "
                  f"{period['period_s_median'] * 1e3:.2f} ms (min {period['period_s_min'] * 1e3:.2f}, max "
                  f"{period['period_s_max'] * 1e3:.2f})"]
    if len(cvs.dropna()):
        worst = float(cvs.max())
        lines += [f"- protocol energy CV at three shapes: worst {worst:.2%} (target {TARGET_CV:.0%} as on the "
                  f"emulator: {'met' if worst <= TARGET_CV else 'missed'})"]
    if len(cross):
        lines += [f"- counter vs integrated instant power over {len(cross)} points: median "
                  f"{cross.median():+.2%}, range {cross.min():+.2%} to {cross.max():+.2%} (instant power "
                  "senses only part of each period on A100/H100, so this is a cross-check, not a truth)"]
    lines += ["", "## Three shapes", "", table(shapes[cols]), "", "## Every point", "", table(points[cols]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fidelity.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, type=Path, help="a results folder measured on this GPU")
    parser.add_argument("--out", required=True, type=Path, help="the markdown report to write")
    parser.add_argument("--no-counter", action="store_true", help="skip polling the counter (no GPU here)")
    args = parser.parse_args(argv)
    csv = args.results / "points.csv"
    if not csv.is_file():
        parser.error(f"--results {args.results}: no points.csv there")
    points = pd.read_csv(csv)
    if "device" in points:
        points = points[points["device"] == "cuda"]
    if points.empty:
        print(f"fidelity.gpu: no GPU points in {csv}", file=sys.stderr)
        return 3
    period = None
    if not args.no_counter:
        import pynvml

        pynvml.nvmlInit()
        period = counter_period(pynvml, pynvml.nvmlDeviceGetHandleByIndex(0))
    atomic_write_text(args.out, report(points, period))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
