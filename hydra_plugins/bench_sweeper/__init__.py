"""Hydra discovers plugins in the `hydra_plugins` namespace; this package exposes our sweeper."""
from hydra_plugins.bench_sweeper.validating_sweeper import ValidatingSweeper

__all__ = ["ValidatingSweeper"]
