"""Hydra callbacks: validate a single run before Hydra creates its output folder, and close a
run or sweep with the table of its points (`bench.tasks.closing`)."""
from __future__ import annotations

import sys
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.cli.errors import PointFailed
from bench.cli.schema import to_typed
from bench.cli.validate import exit_if_invalid
from bench.tasks.closing import summarise


class BenchCallback(Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.failed: list[tuple[str, str]] = []  # (the job's overrides, its refusal)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_if_invalid(config)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return._return_value, dict):
            self.rows.append(job_return._return_value)
        elif job_return.status == JobStatus.FAILED and isinstance(job_return._return_value, PointFailed):
            self.failed.append((" ".join(job_return.overrides or []), str(job_return._return_value)))

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarise(to_typed(config), self.rows)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarise(to_typed(config), self.rows)
        if self.failed:
            lines = [f"bench: {len(self.failed)} point(s) of the sweep failed; the others are stored:"]
            lines += [f"bench:   {job}: {why}" for job, why in self.failed]
            print("\n".join(lines), file=sys.stderr, flush=True)
            raise SystemExit(3)
