"""`python -m bench [task=measure] [overrides...]`: the Hydra entry point."""
from __future__ import annotations

import os
from typing import Any

import torch

# Without a GPU, Triton kernels run in its interpreter (numpy on CPU tensors: correct, slow),
# which must be chosen before any kernel module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from bench.config import register_configs  # noqa: E402
from bench.sweeper import exit_if_invalid  # noqa: E402
from bench.tasks import TASKS  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    exit_if_invalid(cfg)  # also checked before the sweep; cheap, and guards other launchers
    return TASKS[cfg.task](cfg)


if __name__ == "__main__":
    main()
