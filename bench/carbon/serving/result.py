"""The latency SLO and what a simulated replica reports: per-request latencies and energy,
and per-request inter-token-latency (ITL) percentiles rebuilt from the step timeline."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TPOT_METRICS = ("mean_tpot", "itl")


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 2.0
    tpot_s: float = 0.1
    attainment: float = 0.99  # share of online requests that must meet both
    # Per-token latency held to tpot_s: `mean_tpot` is (finish - first token) / (output - 1), vLLM's
    # TPOT; `itl` is the `percentile`-th percentile of the request's own inter-token gaps, so a
    # stall (preemption, a long prefill in the batch) fails a request even when its mean is fine.
    tpot_metric: str = "mean_tpot"
    percentile: float = 99.0  # also the tail the latency report shows beside p50

    def __post_init__(self) -> None:
        if self.tpot_metric not in TPOT_METRICS:
            raise ValueError(f"invalid plan.slo_tpot_metric={self.tpot_metric!r}: must be one of {TPOT_METRICS}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"invalid plan.slo_percentile={self.percentile!r}: must be in (0, 100]")


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
    # Busy energy split by the tokens each request had processed in each step; idle energy is
    # the fleet's, not a request's. Their sum is busy_energy_j.
    prefill_energy_j: np.ndarray = _empty()
    decode_energy_j: np.ndarray = _empty()
    step_end_s: np.ndarray = _empty()  # end time of every step
    # One row per admission: request, step that prefilled it, last step it ran before finishing,
    # being preempted or the run ending; it produced a token at the end of each of those steps.
    segments: np.ndarray = _empty(int, 3)
    _itl_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def energy_j(self) -> float:
        return self.busy_energy_j + self.idle_energy_j

    def itl_s(self, q: float) -> np.ndarray:
        """Per request, the q-th percentile of its gaps between consecutive tokens, the gap
        across a preemption included (NaN with under two tokens or unfinished)."""
        if q not in self._itl_cache:
            out = np.full(len(self.ttft_s), math.nan)
            request = self.segments[:, 0]
            admissions = np.bincount(request, minlength=len(out))
            counted = ~np.isnan(self.finish_s[request])
            gap_s = np.diff(self.step_end_s)  # gap_s[k]: from the end of step k to the end of step k + 1
            # Never preempted: the gaps are a run of step gaps, so requests of one length go together.
            r, first, last = self.segments[counted & (admissions[request] == 1)].T
            lengths = last - first  # gaps: one fewer than tokens
            for m in np.unique(lengths[lengths > 0]):
                pick = lengths == m
                out[r[pick]] = np.percentile(gap_s[first[pick, None] + np.arange(m)], q, axis=1)
            # Preempted (two tokens at least): its token times across its admissions, one request at a time.
            segs = self.segments[counted & (admissions[request] > 1)]
            segs = segs[np.argsort(segs[:, 0], kind="stable")]  # a request's admissions in time order
            requests, starts = np.unique(segs[:, 0], return_index=True)
            for req, a, b in zip(requests, starts, np.append(starts[1:], len(segs))):
                times = np.concatenate([self.step_end_s[s:e + 1] for _, s, e in segs[a:b]])
                out[req] = np.percentile(np.diff(times), q)
            self._itl_cache[q] = out
        return self._itl_cache[q]

    def tpot_metric_s(self, slo: Slo) -> np.ndarray:
        """Per request, the per-token latency the SLO holds to `slo.tpot_s`."""
        return self.tpot_s if slo.tpot_metric == "mean_tpot" else self.itl_s(slo.percentile)

    def attainment(self, slo: Slo) -> float:
        if self.aborted:
            return 0.0
        on = self.online
        if not on.any():
            return 1.0
        per_token = np.nan_to_num(self.tpot_metric_s(slo)[on], nan=0.0)  # a one-token request has none
        return float(((self.ttft_s[on] <= slo.ttft_s) & (per_token <= slo.tpot_s)).mean())

    def percentile(self, what: str, q: float, slo: Slo | None = None) -> float:
        """The q-th percentile over online requests of `ttft_s`, `tpot_s`, `finish_s`, or `itl_s`
        (each request's ITL at `slo.percentile`, 99 without an slo)."""
        per_request = self.itl_s((slo or Slo()).percentile) if what == "itl_s" else getattr(self, what)
        values = per_request[self.online]
        values = values[~np.isnan(values)]
        return float(np.percentile(values, q)) if len(values) else math.nan
