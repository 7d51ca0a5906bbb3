"""PNG plots of a profile (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from bench.common.files import atomic_save_figure  # noqa: E402
from bench.profile import curves  # noqa: E402
from bench.profile.build import offload_modes  # noqa: E402
from bench.profile.fit import Fit  # noqa: E402

_fit = Fit.from_dict


save_figure = atomic_save_figure  # one name for the tests to watch the figures through

def _offloaded(table: Any) -> Any:
    """Rows of CPU-offload cases, by the cases' trait (not their names)."""
    return (offload_modes(table) != "none").to_numpy()


def batching_plot(profile: Any, path: Path) -> Path | None:
    t = profile.table[~_offloaded(profile.table) & profile.table["clock_mhz"].isna()]
    if t.empty:
        return None
    phases = sorted(t["phase"].unique())
    fig, axes = plt.subplots(1, len(phases), figsize=(6 * len(phases), 4.2), squeeze=False)
    for ax, phase in zip(axes[0], phases):
        for (kernel, length, setting), g in t[t["phase"] == phase].groupby(["kernel", "length", "setting"], dropna=False):
            g = g.sort_values("batch_size")
            label = f"{kernel} len={length:g}" + (f" {setting}" if isinstance(setting, str) and setting else "")
            line, = ax.plot(g["batch_size"], g["device_energy_per_token_j"] * 1e3, "o-", label=label)
            for name, fit in profile.fits.get("batching", {}).items():
                f = _fit(fit)
                if f and name.startswith(f"{kernel} ") and f"={length:g} " in name:
                    b = np.geomspace(g["batch_size"].min(), g["batch_size"].max(), 50)
                    ax.plot(b, (f.params["e_inf_j"] + f.params["c_j"] / b) * 1e3, "--", color=line.get_color(), lw=1)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="device energy per token (mJ)",
               title=f"{phase}: energy per token vs batch (dashed: fit)")
        _batch_ticks(ax, t.loc[t["phase"] == phase, "batch_size"])
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def roofline_plot(profile: Any, path: Path) -> Path | None:
    fit = _fit(profile.fits.get("energy_roofline"))
    t = profile.table[profile.table["clock_mhz"].isna() & ~_offloaded(profile.table)]
    if fit is None or t.empty:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    pred = curves.predict_energy_j(fit, t["flops_per_call"], t["min_bytes_per_call"], t["time_per_call_s"])
    for phase, g in t.groupby("phase"):
        idx = g.index
        ax1.loglog(g["device_energy_per_call_j"], pred[t.index.get_indexer(idx)], "o", label=phase)
        ax2.loglog(g["flops_per_call"] / g["min_bytes_per_call"], g["flops_per_call"] / g["device_energy_per_call_j"] / 1e9,
                   "o", label=phase)
    lo, hi = t["device_energy_per_call_j"].min(), t["device_energy_per_call_j"].max()
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1)
    modelled = any("model:" in x for x in profile.meta.get("energy_methods", []))
    ax1.set(xlabel="modelled energy per call (J)" if modelled else "measured energy per call (J)",
            ylabel="energy roofline (J)",
            title=f"energy roofline: R2={fit.r2:.3f}, CV error={fit.cv_rel_error_rms:.1%}"
                  + (" (energy modelled)" if modelled else ""))
    ax2.set(xlabel="arithmetic intensity (flop / byte)", ylabel="GFLOP per joule", title="energy efficiency vs intensity")
    ax1.legend()
    ax2.legend()
    return save_figure(fig, path)


def frequency_plot(profile: Any, path: Path) -> Path | None:
    t = profile.table[profile.table["clock_mhz"].notna()]
    if t.empty:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for kernel, g in t.groupby("kernel"):
        g = g.sort_values("clock_mhz")
        ax1.plot(g["clock_mhz"], g["device_energy_per_call_j"] / g["time_per_call_s"], "o-", label=kernel)
        ax2.plot(g["clock_mhz"], g["device_energy_per_token_j"] * 1e3, "o-", label=kernel)
    ax1.set(xlabel="SM clock (MHz)", ylabel="power (W)", title="power vs clock")
    ax2.set(xlabel="SM clock (MHz)", ylabel="energy per token (mJ)", title="energy vs clock")
    ax1.legend()
    ax2.legend()
    return save_figure(fig, path)


def offload_plot(profile: Any, path: Path) -> Path | None:
    t = profile.table[_offloaded(profile.table)]
    if t.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    # One line per kernel, length and offload setting (threads, fraction or chunks), so two
    # settings never share a line.
    for (kernel, length, setting), g in t.groupby(["kernel", "length", "setting"], dropna=False):
        g = g.sort_values("batch_size")
        label = f"{kernel} len={length:g}" + (f" {setting}" if isinstance(setting, str) and setting else "")
        ax.plot(g["batch_size"], g["host_energy_per_token_j"] * 1e3, "o-", label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="host energy per token (mJ)",
           title="CPU offload: host energy per token")
    _batch_ticks(ax, t["batch_size"])
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _batch_ticks(ax: Any, batch_sizes: Any) -> None:
    """Batch sizes as plain numbers at the measured values, not 10^x labels."""
    ticks = sorted({int(b) for b in batch_sizes})
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def render(profile: Any, out_dir: Path) -> list[Path]:
    made = []
    for suffix, fn in (("batching", batching_plot), ("energy_roofline", roofline_plot),
                       ("frequency", frequency_plot), ("offload", offload_plot)):
        path = fn(profile, Path(out_dir) / f"{profile.name}_{suffix}.png")
        if path is not None:
            made.append(path)
    return made
