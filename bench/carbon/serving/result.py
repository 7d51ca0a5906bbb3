"""The latency SLO and what a simulated replica reports (`simulate.py` fills it in)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 2.0
    tpot_s: float = 0.1
    attainment: float = 0.99  # share of online requests that must meet both


def _empty(dtype=float, cols: int = 0):
    return field(default_factory=lambda: np.zeros((0, cols) if cols else 0, dtype))


@dataclass
class SimResult:
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    finish_s: np.ndarray
    online: np.ndarray  # which requests count for the SLO
    busy_energy_j: float
    idle_energy_j: float
    busy_s: float
    span_s: float
    aborted: bool = False
    preemptions: int = 0  # requests evicted from the KV cache (recomputed when readmitted)
    max_running: int = 0  # most requests holding KV in one step (decoding or being prefilled)
    # One row per admission: request, step that prefilled it, last step it ran before finishing,
    # being preempted or the run ending; it produced a token at the end of each of those steps.
    segments: np.ndarray = _empty(int, 3)

    @property
    def energy_j(self) -> float:
        return self.busy_energy_j + self.idle_energy_j

    def attainment(self, slo: Slo) -> float:
        if self.aborted:
            return 0.0
        on = self.online
        if not on.any():
            return 1.0
        ok = (self.ttft_s[on] <= slo.ttft_s) & (np.nan_to_num(self.tpot_s[on], nan=0.0) <= slo.tpot_s)
        return float(ok.mean())

    def percentile(self, what: str, q: float) -> float:
        values = getattr(self, what)[self.online]
        values = values[~np.isnan(values)]
        return float(np.percentile(values, q)) if len(values) else math.nan
