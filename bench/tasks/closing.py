"""What a measuring run ends with: the table of its points, the profile of its results
directory, and the operational carbon of each point at the configured grid."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.carbon.inputs.grid import GridError, from_config
from bench.measure.results import ResultsStore
from bench.measure.summary import first, point_label, print_table
from bench.profile.build import ProfileError
from bench.profile.fit import FitError
from bench.tasks.fit import fit_and_write

if TYPE_CHECKING:
    from bench.cli.schema import BenchConf


def summarise(cfg: "BenchConf", rows: list[dict[str, Any]]) -> None:
    """Rows returned by the jobs of this process; with none (jobs ran elsewhere, e.g. Slurm), what
    the results directory holds."""
    if cfg.task != "measure":
        return
    rows = rows or ResultsStore(cfg.results_dir).rows()
    if rows and "kernel" in rows[0]:
        print_table(rows, title=f"measured points ({cfg.results_dir})")
        fit_what_was_measured(cfg)
        carbon_estimate(cfg, rows)


def fit_what_was_measured(cfg: "BenchConf") -> None:
    """End a measuring run with the profile of its results directory (in `results_dir/profile`,
    never over the shipped profiles). A fit that cannot be made is reported, not raised: the
    measurements are already safe on disk."""
    try:
        fit_and_write(cfg.results_dir, cfg.hardware, Path(cfg.results_dir) / "profile")
    except (ProfileError, FitError) as err:
        print(f"profile not fitted: {err}")


def carbon_estimate(cfg: "BenchConf", rows: list[dict[str, Any]]) -> None:
    """Operational carbon per million tokens of each measured point at the configured grid's
    mean intensity over the planning period, x PUE (energy as measured or modelled, labelled)."""
    try:
        grid = from_config(cfg.grid, cfg.plan.hours)
    except GridError as err:
        print(f"carbon estimate skipped: {err}")
        return
    mean = float(grid.g_per_kwh.mean())
    print(f"operational carbon of the measured kernels (one attention call per token, not a whole model: see "
          f"task=plan) at {grid.label} (mean {mean:.0f} gCO2e/kWh over {len(grid.g_per_kwh)} h) x PUE "
          f"{cfg.plan.pue:g}, per million tokens:")
    labels = [point_label(row) for row in rows]
    width = max(map(len, labels), default=0)
    g_per_j = mean * cfg.plan.pue / 3.6e6 * 1e6  # gCO2e per J per token, per million tokens
    for row, label in zip(rows, labels):
        # GPU and host apart: a modelled host is an estimate, never added to a measured GPU.
        parts = []
        for name, key, method in (("GPU", "gpu_energy_per_token_j", row.get("gpu_method")),
                                  ("host", "host_energy_per_token_j", row.get("host_energy_method"))):
            value = first(row, key)
            if value is not None:
                parts.append(f"{name} {value * g_per_j:.3g} gCO2e ({value * 1e6 / 3.6e6:.3g} kWh; {method})")
        print(f"  {label:{width}} " + ("; ".join(parts) or "no energy measured"))
