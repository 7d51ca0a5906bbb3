"""Hydra's basic sweeper, plus validation of every job of the sweep before the first one runs,
so an invalid value anywhere in a sweep fails before any measurement or output directory."""
from __future__ import annotations

from typing import Any, List

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from bench.sweeper import exit_if_invalid


class ValidatingSweeper(BasicSweeper):
    def jobs(self, arguments: List[str]) -> List[List[str]]:
        """The override list of every job, in launch order (as the basic sweeper expands them)."""
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        return [job for batch in self.split_arguments(overrides, None) for job in batch]

    def sweep(self, arguments: List[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None
        jobs = self.jobs(arguments)
        for job in jobs:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(job))
            exit_if_invalid(cfg, f" (in sweep job {' '.join(job)})" if len(jobs) > 1 else "")
        return super().sweep(arguments)
