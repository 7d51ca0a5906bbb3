"""Sweeper glue: validation of every job, and Hydra's basic sweeper with what a measurement campaign needs:

- every job of the sweep is validated before the first one runs, so an invalid value anywhere
  fails before any measurement or output directory;
- `grids`: a list of parameter grids, each expanded as a Cartesian product and the results
  concatenated (prefill over batch x seq_len, decode over batch x context_len, without the
  cross terms a single grid would add); command-line sweeps apply to every grid;
- `order: random` (default, with `seed`) shuffles the jobs so slow drifts (temperature, other
  tenants) do not line up with a parameter; `order: grid` keeps Hydra's order;
- a point that fails with a refusal (`bench.cli.main.POINT_FAILURES`) does not end the sweep: the
  next point runs, and the failures are listed when it ends (exit 3);
- a progress line per finished job with the elapsed time and an estimate of what is left,
  when jobs run locally one at a time (other launchers get batches as usual). Points found
  already measured (a resumed sweep) are counted apart and left out of the estimate, which
  they would otherwise make far too short.
"""
from __future__ import annotations

import random
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.utils import JobReturn, JobStatus
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from bench.cli.errors import PointFailed
from bench.cli.sweeper import ORDERS, Progress
from bench.cli.validate import exit_if_invalid


class ValidatingSweeper(BasicSweeper):
    def __init__(self, max_batch_size: Optional[int], params: Optional[Dict[str, str]] = None,
                 grids: Optional[List[Dict[str, Any]]] = None, order: str = "random", seed: int = 0) -> None:
        super().__init__(max_batch_size, params)
        if order not in ORDERS:
            print(f"bench: invalid hydra.sweeper.order={order!r}: choose one of {', '.join(ORDERS)}", file=sys.stderr)
            raise SystemExit(2)
        self.grids = [{k: str(v) for k, v in g.items()} for g in grids] if grids else []
        self.order, self.seed = order, seed

    def _grid_jobs(self, params: Dict[str, str], arguments: List[str]) -> List[List[str]]:
        loader = self.hydra_context.config_loader if self.hydra_context is not None else None
        parser = OverridesParser.create(config_loader=loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(arguments))
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]

    def jobs(self, arguments: List[str], task: str = "measure") -> List[List[str]]:
        """The override list of every job, in launch order. A preset's grids and params are
        measurement points: other tasks (fit, report, plan) run once, or over what the command
        line sweeps."""
        if task != "measure":
            jobs = self._grid_jobs({}, arguments)
            return [job for i, job in enumerate(jobs) if job not in jobs[:i]]
        grids = self.grids or [dict(self.params)]
        jobs: List[List[str]] = []
        for grid in grids:
            params = {**dict(self.params), **grid} if self.grids else grid
            for job in self._grid_jobs(params, arguments):
                if job not in jobs:  # grids may overlap; a point is measured once
                    jobs.append(job)
        if self.order == "random":
            random.Random(self.seed).shuffle(jobs)
        return jobs

    def _batches(self, jobs: List[List[str]]) -> List[List[List[str]]]:
        size = self.max_batch_size
        if size is None and type(self.launcher).__name__ == "BasicLauncher":
            size = 1  # jobs run one by one in this process anyway: report progress after each
        if size is None:
            return [jobs]
        return [jobs[i:i + size] for i in range(0, len(jobs), size)]

    def sweep(self, arguments: List[str]) -> Any:
        assert self.hydra_context is not None and self.config is not None and self.launcher is not None
        jobs = self.jobs(arguments, str(self.config.get("task", "measure")))
        loader = self.hydra_context.config_loader
        # The basic launcher composes each job again (0.25-0.5 s a job): it gets the config composed
        # here for validation instead, as long as this process keeps it (other launchers compose
        # wherever the job runs, from a pickled loader).
        local = type(self.launcher).__name__ == "BasicLauncher"
        composed: Dict[tuple, Any] = {}
        # Read (not made) before any job is composed: its `${now:}` is then fixed in the master's
        # resolver cache, which each job's config copies, so every job logs under this one folder.
        sweep_dir = Path(self.config.hydra.sweep.dir)
        for job in jobs:
            cfg = loader.load_sweep_config(self.config, list(job))
            exit_if_invalid(cfg, f" (in sweep job {' '.join(job)})" if len(jobs) > 1 else "")
            if local and len(composed) < COMPOSED_KEPT:
                composed[tuple(job)] = cfg
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        self.overrides = self._batches(jobs)
        returns = []
        progress = Progress(len(jobs))
        with _composed_once(loader, self.config, composed):
            for batch in self.overrides:
                results = self.launcher.launch(batch, initial_job_idx=progress.done)
                progress.finished([finished_value(r) for r in results])
                returns.append(results)
                _stop_if_interrupted()
        return returns


COMPOSED_KEPT = 256  # job configs kept between validation and launch (about 200 KB each)


@contextmanager
def _composed_once(loader: Any, master: Any, composed: Dict[tuple, Any]) -> Iterator[None]:
    """While the jobs launch, `loader.load_sweep_config` hands each job the config validation composed
    for it (once: the launcher then sets its job fields on it), and composes any other as before."""
    if not composed:
        yield
        return
    compose = loader.load_sweep_config

    def load_sweep_config(master_config: Any, sweep_overrides: List[str]) -> Any:
        cfg = composed.pop(tuple(sweep_overrides), None) if master_config is master else None
        return cfg if cfg is not None else compose(master_config, sweep_overrides)

    before = loader.__dict__.get("load_sweep_config")  # an attribute of its own, if it had one
    loader.load_sweep_config = load_sweep_config
    try:
        yield
    finally:
        if before is None:
            del loader.load_sweep_config  # the class's own method again
        else:
            loader.load_sweep_config = before


def _stop_if_interrupted() -> None:
    """A Ctrl-C whose KeyboardInterrupt Python swallowed (raised inside a finalizer or a callback, it is
    only printed as "Exception ignored") still set the entry's flag: the sweep stops before the next
    point instead of running to the end as if never interrupted."""
    if getattr(sys.modules.get("bench.cli.main"), "INTERRUPTED", False):
        raise KeyboardInterrupt


def finished_value(result: JobReturn) -> Any:
    """A finished job's row; None for a point that failed with a refusal (listed at the end by the
    callback); any other failure is a bug and raises here, with its traceback."""
    if result.status == JobStatus.FAILED and isinstance(result._return_value, PointFailed):
        return None
    return result.return_value
