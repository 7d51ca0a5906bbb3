"""`python -m bench [task=measure] [overrides...]`: the Hydra entry point."""
from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from bench.config import register_configs
from bench.sweeper import exit_if_invalid
from bench.tasks import TASKS

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    exit_if_invalid(cfg)  # also checked before the sweep; cheap, and guards other launchers
    return TASKS[cfg.task](cfg)


if __name__ == "__main__":
    main()
