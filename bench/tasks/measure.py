"""`task=measure`: measure one point (kernel case x shape x device) and store it."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import logging
import os
import socket
from typing import Any

import torch
from omegaconf import OmegaConf

from bench import env
from bench.config import resolve_device, resolve_dtype
from bench.clocks import ClockControl, ClockRequest, sigterm_raises
from bench.crosscheck import codecarbon_span
from bench.lock import device_lock
from bench.measure import TIME_METHOD, MeasurementError, PointResult, Protocol, cv, measure_point
from bench.meters import MeterSet, select_meters
from bench.telemetry import GpuTelemetry, WindowMonitor, gpu_activity, throttle_names
from bench.results import ResultsStore, point_key
from kernels import REGISTRY, Case, Shape
from kernels.cases import offload_case

log = logging.getLogger(__name__)


@functools.cache
def _say_once(message: str) -> None:
    # A sweep runs many jobs in one process; a fact about the machine is said once.
    log.warning(message)


def shape_of(cfg: Any) -> Shape:
    return Shape(
        batch_size=cfg.batch_size, heads=cfg.heads, kv_heads=cfg.kv_heads, head_dim=cfg.head_dim,
        seq_len=cfg.seq_len, context_len=cfg.context_len, causal=cfg.causal, page_size=cfg.page_size,
        offload_fraction=float(cfg.offload.fraction), offload_threads=cfg.offload.threads,
        offload_chunks=cfg.offload.chunks,
    )


def case_of(cfg: Any) -> Case:
    """The case measured: the kernel, or its CPU-offload variant when `offload` is not none."""
    return REGISTRY.get(offload_case(cfg.kernel, cfg.offload.mode))


def identity(cfg: Any, case: Case, shape: Shape, device: torch.device, dtype: torch.dtype, name: str) -> dict[str, Any]:
    """Everything that defines a point; fields the case does not use are left out so that
    e.g. a decode point swept over `seq_len` is recognised as already measured."""
    return {
        "kernel": case.name,
        "device": device.type,
        "device_name": name,
        "dtype": str(dtype).removeprefix("torch."),
        **case.shape_fields(shape),
        "seed": cfg.seed,
        "threads": cfg.threads,
        "measure": OmegaConf.to_container(cfg.measure),
        "clocks": {k: v for k, v in OmegaConf.to_container(cfg.gpu.clocks).items() if k in ("mode", "sm_mhz", "mem_mhz")},
        "meter": OmegaConf.to_container(cfg.meter),
    }


def _row(ident: dict[str, Any], key: str, case: Case, shape: Shape, dtype: torch.dtype,
         result: PointResult, environment: dict[str, Any]) -> dict[str, Any]:
    flops, min_bytes, tokens = case.flops(shape), case.min_bytes(shape, dtype), case.tokens(shape)
    t = result.time_per_call_s
    used = case.shape_fields(shape)
    row: dict[str, Any] = {
        "key": key,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "kernel": case.name, "phase": case.phase, "impl": case.impl, "paged": case.paged,
        "device_impl": case.device_impl,
        "device": ident["device"], "dtype": ident["dtype"],
        # Fields the case does not use (seq_len in decode, ...) are left empty, not misleading.
        **{k: (v if k in used else None) for k, v in dataclasses.asdict(shape).items()},
        "seed": ident["seed"], "threads": ident["threads"],
        **{f"measure_{k}": v for k, v in ident["measure"].items()},
        **{f"meter_{k}": v for k, v in ident["meter"].items()},
        "flops_per_call": flops, "min_bytes_per_call": min_bytes, "tokens_per_call": tokens,
        "calls_per_window": result.calls_per_window, "trials_calls": json.dumps(result.trials_calls),
        "window_s_target": result.window_s_target, "window_s": result.window_s,
        "time_per_call_s": t, "time_per_call_s_cv": result.time_per_call_s_cv, "time_method": TIME_METHOD,
        "trials_time_per_call_s": json.dumps(result.trials_time_per_call_s),
        "tokens_per_s": tokens / t, "tflop_per_s": flops / t / 1e12, "gb_per_s": min_bytes / t / 1e9,
    }
    for d in result.domains:
        p = d.domain
        row.update({
            f"{p}_method": d.method, f"{p}_method_detail": d.detail,
            f"{p}_update_period_s": d.update_period_s, f"{p}_idle_power_w": d.idle_power_w,
            f"{p}_energy_per_call_j": d.energy_per_call_j, f"{p}_energy_per_call_j_cv": d.energy_per_call_j_cv,
            f"{p}_dynamic_energy_per_call_j": d.dynamic_energy_per_call_j, f"{p}_power_w": d.power_w,
            f"{p}_energy_per_token_j": d.energy_per_call_j / tokens,
            f"{p}_trials_energy_per_call_j": json.dumps(d.trials_energy_per_call_j),
            f"{p}_update_intervals_s": json.dumps([round(x, 6) for x in d.update_intervals_s]),
            f"{p}_update_period_s_min": min(d.update_intervals_s, default=float("nan")),
            f"{p}_update_period_s_max": max(d.update_intervals_s, default=float("nan")),
            f"{p}_updates_per_window_min": d.updates_per_window_min,
        })
        if not math.isnan(d.crosscheck_energy_per_call_j):
            row.update({f"{p}_crosscheck_energy_per_call_j": d.crosscheck_energy_per_call_j,
                        f"{p}_crosscheck_rel_diff": d.crosscheck_rel_diff,
                        f"{p}_crosscheck_method": "nvml instant power sampled by the window monitor, trapezoid"})
    total_trials = [sum(vals) for vals in zip(*(d.trials_energy_per_call_j for d in result.domains))]
    nan = float("nan")
    total = sum(d.energy_per_call_j for d in result.domains) if result.domains else nan
    dynamic = sum(d.dynamic_energy_per_call_j for d in result.domains) if result.domains else nan
    row.update({
        "energy_domains": "+".join(d.domain for d in result.domains),
        "energy_method": "; ".join(f"{d.domain}={d.method}" for d in result.domains) or "none",
        "energy_per_call_j": total, "energy_per_call_j_cv": cv(total_trials) if total_trials else nan,
        "dynamic_energy_per_call_j": dynamic,
        "energy_per_token_j": total / tokens, "dynamic_energy_per_token_j": dynamic / tokens,
    })
    row.update(environment)
    return row


def _telemetry_columns(result: PointResult) -> dict[str, Any]:
    t = result.telemetry
    return {
        "quality": result.quality, "trials_discarded": result.trials_discarded,
        "windows_rejected": result.windows_rejected, "preheat_s": result.preheat_s, "cooldown_s": result.cooldown_s,
        "gpu_sm_mhz_mean": t["sm_mhz_mean"], "gpu_mem_mhz_mean": t["mem_mhz_mean"],
        "gpu_temp_c_start": t["temp_c_start"], "gpu_temp_c_end": t["temp_c_end"], "gpu_temp_c_max": t["temp_c_max"],
        "gpu_throttle_reasons": t["throttle_reasons"], "throttled": t["throttled"],
        # Per kept window, in trial order (empty lists without a GPU monitor).
        "trials_gpu_sm_mhz_mean": json.dumps([round(w.sm_mhz_mean, 1) for w in result.windows if w.samples]),
        "trials_gpu_mem_mhz_mean": json.dumps([round(w.mem_mhz_mean, 1) for w in result.windows if w.samples]),
        "trials_gpu_temp_c": json.dumps([[w.temp_c_start, w.temp_c_end] for w in result.windows if w.samples]),
        "trials_gpu_throttle_reasons": json.dumps(["+".join(throttle_names(w.reasons)) for w in result.windows
                                                   if w.samples]),
        "trials_updates": json.dumps([w.updates for w in result.windows]),
        "trials_monitor_polls": json.dumps([w.polls for w in result.windows]),
    }


def _check_gpu_idle(cfg: Any, meters: MeterSet) -> dict[str, Any]:
    if meters.nvml is None or cfg.gpu.busy_check == "off":
        return {}
    activity = gpu_activity(meters.nvml, meters.gpu_handle, os.getpid())
    if activity.busy:
        message = (f"the GPU is in use by something else (utilisation up to {activity.utilization_pct_max}% while "
                   f"this job was idle; other compute PIDs: {list(activity.other_pids) or 'none visible'})")
        if cfg.gpu.busy_check == "error":
            raise MeasurementError(message + "; gpu.busy_check=error")
        log.warning("%s: measuring anyway (gpu.busy_check=warn), recorded in gpu_busy", message)
    return {"gpu_busy": activity.busy, "gpu_busy_utilization_pct": activity.utilization_pct_max,
            "gpu_other_pids": json.dumps(list(activity.other_pids))}


def _span_columns(readings: list, codecarbon: dict[str, Any]) -> dict[str, Any]:
    cols: dict[str, Any] = dict(codecarbon)
    if readings:
        span_j = sum(r.energy_j for r in readings)
        cols.update({"span_energy_j": span_j, "span_duration_s": readings[0].duration_s,
                     "span_energy_method": "; ".join(f"{r.domain}={r.method}" for r in readings)})
        if "codecarbon_energy_j" in codecarbon and span_j:
            cols["codecarbon_rel_diff"] = (codecarbon["codecarbon_energy_j"] - span_j) / span_j
            # Domain by domain where both have one (codecarbon's RAM model has no counterpart without RAPL DRAM).
            for ours, theirs in (({"gpu"}, "codecarbon_gpu_energy_j"), ({"cpu", "cpu_package"}, "codecarbon_cpu_energy_j")):
                mine = sum(r.energy_j for r in readings if r.domain in ours)
                if mine > 0:
                    cols[theirs.replace("_energy_j", "_rel_diff")] = (codecarbon[theirs] - mine) / mine
    return cols


def run(cfg: Any) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if device.type != "cuda":
        _say_once("No GPU in use: measuring host energy only (CPU fallback).")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    case, shape = case_of(cfg), shape_of(cfg)
    ident = identity(cfg, case, shape, device, dtype, env.device_name(device))
    key = point_key(ident)
    store = ResultsStore(cfg.results_dir)
    if store.has(key):
        log.info("%s %s: already measured in %s (key %s), skipped", case.name, case.shape_fields(shape), store.root, key)
        return store.read(key)

    meter_args = (device, cfg.meter.gpu, cfg.meter.host, cfg.meter.powercap_root, cfg.meter.cpu_tdp_w, cfg.meter.cpu_cores)
    meters = select_meters(*meter_args)
    span = select_meters(*meter_args) if cfg.codecarbon.enabled else None  # ours over the same span as codecarbon's
    for note in meters.notes:
        _say_once(note)
    device_id = meters.gpu_id or f"cpu-{socket.gethostname()}"
    measure_conf = OmegaConf.to_container(cfg.measure)
    use_monitor, interval_s = measure_conf.pop("monitor"), measure_conf.pop("monitor_interval_s")
    protocol = Protocol(**measure_conf)
    monitor = None
    try:
        with device_lock(cfg.lock.dir, device_id, cfg.lock.wait_s), sigterm_raises():
            extra = _check_gpu_idle(cfg, meters)
            telemetry = GpuTelemetry(meters.nvml, meters.gpu_handle) if meters.nvml is not None else None
            if use_monitor:
                monitor = WindowMonitor(meters.meters, telemetry, interval_s)
            clocks = _clock_control(cfg, meters)
            with clocks, _codecarbon(cfg, device) as codecarbon:
                for m in span.meters if span else []:
                    m.start()
                fn = case.build(shape, device, dtype, cfg.seed)
                sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
                result = measure_point(fn, meters.meters, protocol, sync, monitor=monitor,
                                       temperature_c=telemetry.temperature_c if telemetry else None)
                span_readings = [m.stop() for m in span.meters] if span else []
    finally:
        if monitor is not None:
            monitor.close()
        meters.close()
        if span:
            span.close()
    environment = {**env.describe(device), **_telemetry_columns(result), **extra,
                   "clocks_mode": cfg.gpu.clocks.mode, "clocks_sm_mhz_requested": cfg.gpu.clocks.sm_mhz,
                   "clocks_mem_mhz_requested": cfg.gpu.clocks.mem_mhz,
                   **_span_columns(span_readings, codecarbon)}
    row = _row(ident, key, case, shape, dtype, result, environment)
    store.write(row)
    log.info("%s %s: %.4g ms/call, %.4g mJ/token (%s), quality %s", case.name, case.shape_fields(shape),
             row["time_per_call_s"] * 1e3, row["energy_per_token_j"] * 1e3, row["energy_method"], row["quality"])
    return row


def _clock_control(cfg: Any, meters: MeterSet) -> Any:
    if meters.nvml is None:
        return contextlib.nullcontext()
    c = cfg.gpu.clocks
    request = ClockRequest(mode=c.mode, sm_mhz=c.sm_mhz, mem_mhz=c.mem_mhz, settle_timeout_s=c.settle_timeout_s,
                           tolerance_mhz=c.tolerance_mhz)
    return ClockControl(meters.nvml, meters.gpu_handle, request, cfg.gpu.state_dir, uuid=meters.gpu_id or "gpu")


def _codecarbon(cfg: Any, device: torch.device) -> Any:
    if not cfg.codecarbon.enabled:
        return contextlib.nullcontext({})
    index = (device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" else None
    return codecarbon_span(cfg.codecarbon.country, index)
