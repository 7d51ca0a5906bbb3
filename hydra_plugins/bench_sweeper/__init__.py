"""Hydra instantiates sweepers only from the `hydra_plugins` namespace; this exposes ours."""
from hydra_plugins.bench_sweeper.validating_sweeper import ValidatingSweeper

__all__ = ["ValidatingSweeper"]
