"""Sweeper glue: the sweeper's typed config, its orders and its progress line. The sweeper class
lives in `hydra_plugins.bench_sweeper` (Hydra instantiates sweepers only from there)."""
from __future__ import annotations

import datetime as dt
import sys
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from bench.measure.results import StoredRow


@dataclass
class ValidatingSweeperConf:
    _target_: str = "hydra_plugins.bench_sweeper.validating_sweeper.ValidatingSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    grids: Optional[List[Dict[str, Any]]] = None  # each expanded as a product, then concatenated
    order: str = "random"  # random (seeded) | grid
    seed: int = 0


ORDERS = ("random", "grid")


class Progress:
    """The sweep's progress line. A job that returns a `StoredRow` (found stored when it began)
    was resumed, not measured: it took no time, so it does not count in the estimate."""

    def __init__(self, total: int, clock=time.monotonic) -> None:
        self.total, self.clock = total, clock
        self.done = self.resumed = 0
        self.start = clock()
        self.measured_s = 0.0
        self._last = self.start

    def finished(self, rows: List[Any]) -> str:
        now = self.clock()
        resumed = sum(isinstance(r, StoredRow) for r in rows)
        self.done += len(rows)
        self.resumed += resumed
        if resumed < len(rows):
            self.measured_s += now - self._last
        self._last = now
        measured = self.done - self.resumed
        fmt = lambda s: str(dt.timedelta(seconds=round(s)))  # noqa: E731
        line = f"sweep: {self.done}/{self.total} points ({100 * self.done / self.total:.0f}%)"
        if self.resumed:
            line += f", {self.resumed} from an earlier run"
        line += f", {fmt(now - self.start)} elapsed"
        if self.done < self.total and measured:
            line += f", ~{fmt(self.measured_s / measured * (self.total - self.done))} left"
        if self.total > 1:  # a single job (a fit, a plan) needs no progress line
            print(line, file=sys.stderr, flush=True)
        return line


