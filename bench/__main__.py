"""`python -m bench [task=measure] [overrides...]`: the Hydra entry point."""
from __future__ import annotations

import os
from typing import Any

import torch

# Without a GPU, Triton kernels run in its interpreter (numpy on CPU tensors: correct, slow),
# which must be chosen before any kernel module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import sys  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from bench.carbon.planner import PlanError  # noqa: E402
from bench.clocks import ClockError  # noqa: E402
from bench.config import register_configs  # noqa: E402
from bench.lock import DeviceBusy  # noqa: E402
from bench.measure import MeasurementError  # noqa: E402
from bench.meters import MeterUnavailable  # noqa: E402
from bench.profiles import ProfileError  # noqa: E402
from bench.sweeper import exit_if_invalid  # noqa: E402
from bench.tasks import TASKS  # noqa: E402

register_configs()

# Refusals a user can act on: one line and exit status 3, not a traceback (2 is a bad config).
REFUSALS = (ClockError, DeviceBusy, MeasurementError, MeterUnavailable, ProfileError, PlanError)
_seen_results_dirs: set[str] = set()


def interrupted() -> None:
    """Ctrl-C: one line, exit status 130. Clocks are already reset and the lock released (both
    unwind in `finally`); finished points are on disk and the one in progress is not, so a rerun
    of the same command measures exactly the rest."""
    where = ", ".join(f"{d}/points" for d in sorted(_seen_results_dirs)) or "the results directory"
    print(f"bench: interrupted; finished points are kept in {where}. "
          "Rerun the same command to measure the rest (finished points are skipped).", file=sys.stderr)
    raise SystemExit(130)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    _seen_results_dirs.add(str(cfg.results_dir))
    exit_if_invalid(cfg)  # also checked before the sweep; cheap, and guards other launchers
    try:
        return TASKS[cfg.task](cfg)
    except REFUSALS as err:
        print(f"bench: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(3) from None


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        interrupted()
