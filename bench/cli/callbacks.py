"""Hydra callbacks: validate a single run before Hydra creates its output folder, and close a
run or sweep with the table of its points (`bench.tasks.closing`)."""
from __future__ import annotations

from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.cli.schema import to_typed
from bench.cli.validate import exit_if_invalid
from bench.tasks.closing import summarise


class BenchCallback(Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_if_invalid(config)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return._return_value, dict):
            self.rows.append(job_return._return_value)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarise(to_typed(config), self.rows)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarise(to_typed(config), self.rows)
