"""What `python -m bench task=<name>` runs: each task takes the typed config (`BenchConf`) and
drives the stages (`bench.measure`, `bench.profile`, `bench.carbon`)."""
from __future__ import annotations

import importlib
from typing import Any, Callable

NAMES = ("measure", "fit", "report", "plan", "validate")


def _runner(name: str) -> Callable[[Any], Any]:
    """The task's `run`, its module imported only when the task runs: a process that measures does
    not load the planner's solver, and the config's validation loads only what the chosen task reads."""
    def run(cfg: Any) -> Any:
        return importlib.import_module(f"bench.tasks.{name}").run(cfg)

    return run


TASKS: dict[str, Callable[[Any], Any]] = {name: _runner(name) for name in NAMES}
