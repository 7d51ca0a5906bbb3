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
