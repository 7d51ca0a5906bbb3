"""A measured point as one result row: its identity (what the resume key hashes), the case's
traits, work, time, per-domain energy with its method, telemetry and environment. The columns are
documented in `results/README.md`."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import statistics
from typing import Any, Callable

import torch

from bench.measure.clocks import ClockRequest
from bench.measure.meters import MeterConf
from bench.measure.monitor import throttle_names
from bench.measure.point import DomainResult, PointResult, cv
from bench.measure.protocol import Protocol
from bench.measure.session import Measured
from kernels import Case, Shape


def identity(case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, device_name: str, seed: int,
             threads: int, protocol: Protocol, clocks: ClockRequest, meter: MeterConf, software: dict[str, str],
             kernel_target: str | None = None) -> dict[str, Any]:
    """Everything that defines a point; fields the case does not use are left out so that
    e.g. a decode point swept over `seq_len` is recognised as already measured. `software`: the
    versions that run the kernel (torch, Triton, CUDA, driver), so an upgrade measures anew and
    keeps the old points beside the new."""
    ident = {
        "kernel": case.name,
        "device": device.type,
        "device_name": device_name,
        "dtype": str(dtype).removeprefix("torch."),
        **case.shape_fields(shape),
        "seed": seed,
        "threads": threads,
        "measure": dataclasses.asdict(protocol),
        "clocks": {k: v for k, v in dataclasses.asdict(clocks).items() if k in ("mode", "sm_mhz", "mem_mhz")},
        "meter": dataclasses.asdict(meter),
        "software": dict(software),
    }
    if kernel_target is not None:  # a user's case: its factory is part of what was measured
        ident["kernel_target"] = kernel_target
    return ident


def _work_and_time(ident: dict[str, Any], key: str, case: Case, shape: Shape, dtype: torch.dtype,
                   result: PointResult) -> dict[str, Any]:
    flops, min_bytes, tokens = case.flops(shape), case.min_bytes(shape, dtype), case.tokens(shape)
    t = result.time_per_call_s
    used = case.shape_fields(shape)
    traits = case.traits()
    return {
        "key": key,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kernel": case.name, "phase": traits["phase"], "impl": traits["impl"], "paged": traits["paged"],
        "device_impl": traits["device_impl"], "impl_family": traits["impl_family"],
        "offload_mode": traits["offload_mode"], "uses_triton": traits["uses_triton"], "op": traits["op"],
        **({"kernel_target": ident["kernel_target"]} if "kernel_target" in ident else {}),
        "device": ident["device"], "dtype": ident["dtype"],
        # Fields the case does not use (seq_len in decode, ...) are left empty, not misleading.
        **{k: (v if k in used else None) for k, v in dataclasses.asdict(shape).items()},
        "seed": ident["seed"], "threads": ident["threads"],
        **{f"measure_{k}": v for k, v in ident["measure"].items()},
        **{f"meter_{k}": v for k, v in ident["meter"].items()},
        "flops_per_call": flops, "min_bytes_per_call": min_bytes, "tokens_per_call": tokens,
        "calls_per_window": result.calls_per_window, "trials_calls": json.dumps(result.trials_calls),
        "window_s_target": result.window_s_target, "window_s": result.window_s,
        "time_per_call_s": t, "time_per_call_s_cv": result.time_per_call_s_cv, "time_method": result.time_method,
        "trials_time_per_call_s": json.dumps(result.trials_time_per_call_s),
        "tokens_per_s": tokens / t, "tflop_per_s": flops / t / 1e12, "gb_per_s": min_bytes / t / 1e9,
    }


def _sum(result: PointResult, select: Callable[[DomainResult], bool], dynamic: bool = False) -> tuple[float, float]:
    """(median, CV) of the per-trial sums over the selected domains."""
    trials = result.trials_sum_j(select, dynamic)
    return (statistics.median(trials), cv(trials)) if trials else (math.nan, math.nan)


def _methods(domains: list[DomainResult]) -> str:
    return "; ".join(f"{d.domain}={d.method}" for d in domains)


def energy_columns(result: PointResult, tokens: float) -> dict[str, Any]:
    """Per-domain energy with its method; totals over measured domains (`measured_*`, the
    headline) apart from totals that include modelled domains (`*_incl_model`), and GPU apart
    from host (`host_*`: every domain but the GPU). Never a measured and a modelled value in one
    number unless the column says `incl_model`."""
    row: dict[str, Any] = {}
    for d in result.domains:
        p = d.domain
        row.update({
            f"{p}_method": d.method, f"{p}_method_detail": d.detail, f"{p}_measured": d.measured,
            f"{p}_update_period_s": d.update_period_s, f"{p}_idle_power_w": d.idle_power_w,
            f"{p}_power_limit_w": d.power_limit_w,
            f"{p}_energy_per_call_j": d.energy_per_call_j, f"{p}_energy_per_call_j_cv": d.energy_per_call_j_cv,
            f"{p}_dynamic_energy_per_call_j": d.dynamic_energy_per_call_j, f"{p}_power_w": d.power_w,
            f"{p}_energy_per_token_j": d.energy_per_call_j / tokens,
            f"{p}_trials_energy_per_call_j": json.dumps(d.trials_energy_per_call_j),
            f"{p}_update_intervals_s": json.dumps([round(x, 6) for x in d.update_intervals_s]),
            f"{p}_update_period_s_min": min(d.update_intervals_s, default=float("nan")),
            f"{p}_update_period_s_max": max(d.update_intervals_s, default=float("nan")),
            f"{p}_updates_per_window_min": d.updates_per_window_min,
            f"{p}_rel_error_max": d.rel_error_max,
        })
        if not math.isnan(d.crosscheck_energy_per_call_j):
            row.update({f"{p}_crosscheck_energy_per_call_j": d.crosscheck_energy_per_call_j,
                        f"{p}_crosscheck_rel_diff": d.crosscheck_rel_diff,
                        f"{p}_crosscheck_method": "nvml instant power sampled by the recorder, trapezoid"})
    measured = [d for d in result.domains if d.measured]
    host = [d for d in result.domains if d.domain != "gpu"]
    m_total, m_cv = _sum(result, lambda d: d.measured)
    m_dyn, _ = _sum(result, lambda d: d.measured, dynamic=True)
    a_total, a_cv = _sum(result, lambda d: True)
    a_dyn, _ = _sum(result, lambda d: True, dynamic=True)
    h_total, h_cv = _sum(result, lambda d: d.domain != "gpu")
    row.update({
        "energy_domains": "+".join(d.domain for d in result.domains),
        "energy_method": _methods(list(result.domains)) or "none",
        "measured_domains": "+".join(d.domain for d in measured),
        "measured_method": _methods(measured) or "none",
        "measured_energy_per_call_j": m_total, "measured_energy_per_call_j_cv": m_cv,
        "measured_energy_per_token_j": m_total / tokens, "measured_dynamic_energy_per_token_j": m_dyn / tokens,
        "energy_per_call_j_incl_model": a_total, "energy_per_call_j_incl_model_cv": a_cv,
        "energy_per_token_j_incl_model": a_total / tokens, "dynamic_energy_per_token_j_incl_model": a_dyn / tokens,
        "energy_incl_model_method": _methods(list(result.domains)) or "none",
        "host_energy_per_call_j": h_total, "host_energy_per_call_j_cv": h_cv, "host_energy_per_token_j": h_total / tokens,
        "host_energy_method": _methods(host) or "none",
    })
    return row


def telemetry_columns(result: PointResult) -> dict[str, Any]:
    t = result.telemetry
    return {
        "quality": result.quality, "trials_discarded": result.trials_discarded,
        "windows_rejected": result.windows_rejected, "window_rejections": json.dumps(list(result.rejections)),
        "launch": result.launch, "lead_in_s": result.lead_in_s, "measure_s": result.measure_s, "preheat_s": result.preheat_s, "cooldown_s": result.cooldown_s,
        "gpu_sm_mhz_mean": t["sm_mhz_mean"], "gpu_mem_mhz_mean": t["mem_mhz_mean"],
        "gpu_temp_c_start": t["temp_c_start"], "gpu_temp_c_end": t["temp_c_end"], "gpu_temp_c_max": t["temp_c_max"],
        "gpu_throttle_reasons": t["throttle_reasons"], "throttled": t["throttled"],
        "gpu_power_capped": t["power_capped"],
        # Per kept window, in trial order (empty lists without a GPU monitor).
        "trials_gpu_sm_mhz_mean": json.dumps([round(w.sm_mhz_mean, 1) for w in result.windows if w.samples]),
        "trials_gpu_mem_mhz_mean": json.dumps([round(w.mem_mhz_mean, 1) for w in result.windows if w.samples]),
        "trials_gpu_temp_c": json.dumps([[w.temp_c_start, w.temp_c_end] for w in result.windows if w.samples]),
        "trials_gpu_throttle_reasons": json.dumps(["+".join(throttle_names(w.reasons)) for w in result.windows
                                                   if w.samples]),
        "trials_updates": json.dumps([w.updates for w in result.windows]),
        "trials_monitor_polls": json.dumps([w.polls for w in result.windows]),
    }


def point_row(ident: dict[str, Any], key: str, case: Case, shape: Shape, dtype: torch.dtype, measured: Measured,
              clocks: ClockRequest) -> dict[str, Any]:
    """The stored row of one measured point."""
    result = measured.result
    return {
        **_work_and_time(ident, key, case, shape, dtype, result),
        **energy_columns(result, case.tokens(shape)),
        **measured.environment, **telemetry_columns(result), **measured.busy,
        "clocks_mode": clocks.mode, "clocks_sm_mhz_requested": clocks.sm_mhz, "clocks_mem_mhz_requested": clocks.mem_mhz,
        **measured.span,
    }
