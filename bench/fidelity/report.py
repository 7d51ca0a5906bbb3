"""`fidelity.csv`, `fidelity.md` and `fidelity.png` of a fidelity run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from bench.common.files import atomic_save_figure, atomic_write_text  # noqa: E402
from bench.common.markdown import table  # noqa: E402
from bench.fidelity.run import COLUMNS, TARGET_CV, TARGET_MEASURE_S, TARGET_REL_ERROR, meets_targets  # noqa: E402


def write(rows: list[dict[str, Any]], out: Path, settings: dict[str, Any], environment: dict[str, Any]) -> list[Path]:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    csv = out / "fidelity.csv"
    atomic_write_text(csv, frame.to_csv(index=False))
    md = out / "fidelity.md"
    atomic_write_text(md, markdown(frame, settings, environment))
    return [csv, md, plot(frame, out / "fidelity.png")]


def markdown(frame: pd.DataFrame, settings: dict[str, Any], environment: dict[str, Any]) -> str:
    ours = frame[frame["protocol"] == "ours"]
    met = sum(meets_targets(r) for r in ours.to_dict("records"))
    shown = frame.assign(rel_error_pct=frame["rel_error"] * 100, cv_pct=frame["cv"] * 100)
    pivot = shown.pivot_table(index=["period_s", "counter_mode", "call_s"], columns="protocol",
                              values="rel_error_pct", sort=False).reset_index()
    pivot.columns = [str(c) if c in ("period_s", "counter_mode", "call_s") else f"{c} error %" for c in pivot.columns]
    lines = [
        "# Energy-protocol fidelity on the NVML emulator",
        "",
        f"Our protocol met every target at {met} of {len(ours)} points (targets: |rel_error| <= "
        f"{TARGET_REL_ERROR:.0%}, cv <= {TARGET_CV:.0%}, measure_s <= {TARGET_MEASURE_S:g} s at a 100 ms period).",
        "`window` is a Zeus-style window read at unaligned edges (eager launches, one "
        f"{settings['baseline_window_s']:g} s window, median of {settings['baseline_repeats']}); "
        "`power_integration` integrates NVML power sampled every 5 ms over the same kind of window.",
        "Both launch eagerly, so at short calls they measure the launch rate, idle gaps included. Their "
        "1 s window spans whole counter periods, so the quantisation at its two ends mostly cancels; what "
        "remains is the window's overshoot past 1 s (windows of other lengths err by up to one period over "
        "the window).",
        "Truth is the emulated device's busy power x call duration (energy per call in steady state).",
        "",
        "## Relative error of energy per call, by protocol (%)",
        "",
        table(pivot),
        "",
        "## Every measurement",
        "",
        table(shown[["protocol", "counter_mode", "call_s", "period_s", "true_energy_per_call_j",
                     "measured_energy_per_call_j", "rel_error_pct", "cv_pct", "measure_s"]]),
        "",
        "## Settings",
        "",
        "```json",
        json.dumps({"grid": settings, "environment": environment}, indent=1, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: Path) -> Path:
    panels = list(frame.groupby(["period_s", "counter_mode"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, sharey=True)
    for ax, ((period, mode), g) in zip(axes[0], panels):
        for protocol, p in g.groupby("protocol", sort=False):
            p = p.sort_values("call_s")
            ax.loglog(p["call_s"], p["rel_error"].abs().clip(lower=1e-5), "o-", label=protocol)
        ax.axhline(TARGET_REL_ERROR, color="grey", ls="--", lw=0.8)
        ax.set_title(f"period {period * 1e3:g} ms, {mode} counter", fontsize=9)
        ax.set_xlabel("call duration (s)")
    axes[0][0].set_ylabel("|relative error| of energy per call")
    axes[0][0].legend(fontsize=8)
    return atomic_save_figure(fig, path)
