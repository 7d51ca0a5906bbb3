"""What the protocol reports for one point: per-domain results, totals over measured domains
apart from totals that include modelled ones, and the quality flag."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Sequence

from bench.measure.monitor import WindowStats, throttle_names

# Where chunks are queued ahead (CUDA events) and the device never ran dry, a window's time per call
# is the device's rate over the chunk boundaries (the median slope of every pair: a boundary the
# host saw late does not move it); otherwise (chunks synchronised one by one, or a dry window kept
# after its retries) the window's time over its calls. Each point says which its windows took.
TIME_METHOD_RATE = "perf_counter at chunk boundaries queued ahead, their median slope"
TIME_METHOD = "perf_counter between device-synchronised chunk boundaries"
TIME_METHOD_MIXED = "per window: median slope of chunk boundaries queued ahead, or time over calls where it ran dry"
QUALITY_FLAGS = ("noisy", "throttled", "starved", "too-few-updates", "imprecise", "implausible", "single-trial")


def cv(values: Sequence[float]) -> float:
    """Coefficient of variation, sample standard deviation / |mean|; NaN for fewer than 2 values
    or a zero mean (a negative mean must not make a spread look small)."""
    if len(values) < 2:
        return float("nan")
    mean = statistics.fmean(values)
    return statistics.stdev(values) / abs(mean) if mean else float("nan")


def is_measured(method: str) -> bool:
    return not method.startswith("model:")


@dataclass(frozen=True)
class DomainResult:
    domain: str
    method: str
    detail: str
    update_period_s: float  # median interval between counter updates (0 for a continuous meter)
    idle_power_w: float
    energy_per_call_j: float
    energy_per_call_j_cv: float
    dynamic_energy_per_call_j: float
    power_w: float
    trials_energy_per_call_j: tuple[float, ...]
    trials_dynamic_energy_per_call_j: tuple[float, ...] = ()
    update_intervals_s: tuple[float, ...] = ()
    updates_per_window_min: int | None = None  # fewest counter intervals a kept window spanned
    rel_error_max: float = math.nan  # largest edge-timing error bound of a kept window
    crosscheck_energy_per_call_j: float = math.nan
    crosscheck_rel_diff: float = math.nan  # (cross-check - counter) / counter
    power_limit_w: float = math.nan  # the limit the domain ran under, where its meter knows it (NVML's enforced limit)

    @property
    def measured(self) -> bool:
        return is_measured(self.method)


@dataclass(frozen=True)
class PointResult:
    calls_per_window: int
    trials_calls: tuple[int, ...]
    window_s_target: float
    window_s: float
    time_per_call_s: float
    time_per_call_s_cv: float
    trials_time_per_call_s: tuple[float, ...]
    domains: tuple[DomainResult, ...]
    quality: str = "ok"
    trials_discarded: int = 0
    windows_rejected: int = 0
    rejections: tuple[str, ...] = ()  # why each rejected window was redone
    windows: tuple[WindowStats, ...] = ()
    preheat_s: float = 0.0
    cooldown_s: float = 0.0
    launch: str = "eager"  # eager | cuda_graph(<n> calls)
    lead_in_s: float = 0.0
    measure_s: float = math.nan  # wall time the whole protocol took
    time_method: str = TIME_METHOD  # TIME_METHOD_RATE: every kept window took the rate; _MIXED: some did

    @property
    def throttled(self) -> bool:
        return any(w.throttled for w in self.windows)

    @property
    def power_capped(self) -> bool:
        return any(w.power_capped for w in self.windows)

    def trials_sum_j(self, select: Callable[[DomainResult], bool], dynamic: bool = False) -> list[float]:
        """Per-trial sums of energy per call over the selected domains: a total and its CV are
        always taken from the same per-trial sums (never a sum of medians)."""
        chosen = [d for d in self.domains if select(d)]
        if not chosen:
            return []
        series = [d.trials_dynamic_energy_per_call_j if dynamic else d.trials_energy_per_call_j for d in chosen]
        return [sum(v) for v in zip(*series)]

    def trials_total_j(self, measured_only: bool) -> list[float]:
        """Per-trial totals over measured domains only, or over all (modelled ones included)."""
        return self.trials_sum_j(lambda d: d.measured or not measured_only)

    def total_j(self, measured_only: bool) -> float:
        trials = self.trials_total_j(measured_only)
        return statistics.median(trials) if trials else math.nan

    @property
    def telemetry(self) -> dict[str, object]:
        """GPU clocks, temperatures and throttle reasons over the kept windows (NaN without a GPU)."""
        gpu = [w for w in self.windows if w.samples]
        reasons = 0
        for w in gpu:
            reasons |= w.reasons
        med = (lambda xs: statistics.median(xs)) if gpu else (lambda xs: math.nan)
        return {
            "sm_mhz_mean": med([w.sm_mhz_mean for w in gpu]),
            "mem_mhz_mean": med([w.mem_mhz_mean for w in gpu]),
            "temp_c_start": gpu[0].temp_c_start if gpu else math.nan,
            "temp_c_end": gpu[-1].temp_c_end if gpu else math.nan,
            "temp_c_max": max((max(w.temp_c_start, w.temp_c_end) for w in gpu), default=math.nan),
            "throttle_reasons": "+".join(throttle_names(reasons)),
            "throttled": self.throttled,
            "power_capped": self.power_capped,
        }


def quality_flag(result: PointResult, cv_threshold: float, persisting: set[str], trials: int) -> str:
    """`ok`, or the problems joined by `+` (see QUALITY_FLAGS): spreads are judged on time and on
    both totals (measured, and including modelled domains), each from per-trial sums."""
    spreads = [result.time_per_call_s_cv, cv(result.trials_total_j(True)), cv(result.trials_total_j(False))]
    flags = set(persisting)
    if any(x > cv_threshold for x in spreads if not math.isnan(x)):
        flags.add("noisy")
    if result.throttled:
        flags.add("throttled")
    if trials == 1:
        flags.add("single-trial")  # one window has no spread to judge: never `ok`
    return "+".join(f for f in QUALITY_FLAGS if f in flags) or "ok"
