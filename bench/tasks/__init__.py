"""What `python -m bench task=<name>` runs: each task takes the typed config (`BenchConf`) and
drives the stages (`bench.measure`, `bench.profile`, `bench.carbon`)."""
from __future__ import annotations

from typing import Any, Callable

from bench.tasks import fit, measure, plan, report, validate

TASKS: dict[str, Callable[[Any], Any]] = {"measure": measure.run, "fit": fit.run, "report": report.run,
                                          "plan": plan.run, "validate": validate.run}
