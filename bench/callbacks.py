"""Hydra callbacks: validate a single run before Hydra creates its output folder, and print the
table of every point when a run or sweep ends."""
from __future__ import annotations

from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.results import ResultsStore
from bench.summary import print_table
from bench.sweeper import exit_if_invalid


class BenchCallback(Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_if_invalid(config)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return._return_value, dict):
            self.rows.append(job_return._return_value)

    def _summarise(self, config: DictConfig) -> None:
        if config.task != "measure":
            return
        rows = self.rows
        if not rows:  # jobs ran elsewhere (e.g. Slurm): read what they stored
            rows = ResultsStore(config.results_dir).rows()
        if rows and "kernel" in rows[0]:
            print_table(rows, title=f"measured points ({config.results_dir})")
            _fit_what_was_measured(config)
            _carbon_estimate(config, rows)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._summarise(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._summarise(config)


def _fit_what_was_measured(config: DictConfig) -> None:
    """End a measuring run with the profile of its results directory (in `results_dir/profile`,
    never over the shipped profiles). A fit that cannot be made is reported, not raised: the
    measurements are already safe on disk."""
    from pathlib import Path

    from bench.fit import FitError
    from bench.profiles import ProfileError
    from bench.tasks.fit import fit_and_write

    try:
        fit_and_write(config.results_dir, config.hardware, Path(config.results_dir) / "profile")
    except (ProfileError, FitError) as err:
        print(f"profile not fitted: {err}")


def _carbon_estimate(config: DictConfig, rows: list[dict[str, Any]]) -> None:
    """Operational carbon per million tokens of each measured point at the configured grid's
    mean intensity over the planning period, x PUE (energy as measured or modelled, labelled)."""
    from bench.carbon.grid import GridError, from_config

    try:
        grid = from_config(config.grid, config.plan.hours)
    except GridError as err:
        print(f"carbon estimate skipped: {err}")
        return
    mean = float(grid.g_per_kwh.mean())
    print(f"operational carbon of the measured kernels (one attention call per token, not a whole model: see "
          f"task=plan) at {grid.label} (mean {mean:.0f} gCO2e/kWh over {len(grid.g_per_kwh)} h) x PUE "
          f"{config.plan.pue:g}, per million tokens:")
    from bench.summary import point_label

    labels = [point_label(row) for row in rows]
    width = max(map(len, labels), default=0)
    for row, label in zip(rows, labels):
        kwh_per_mtok = row["energy_per_token_j"] * 1e6 / 3.6e6
        print(f"  {label:{width}} {kwh_per_mtok * mean * config.plan.pue:10.3g} gCO2e "
              f"({kwh_per_mtok:.3g} kWh; energy: {row['energy_method']})")
