"""`task=measure`: measure one point (kernel case x shape x device) and store it."""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
from typing import Any

import torch
from omegaconf import OmegaConf

from bench import env
from bench.config import resolve_device, resolve_dtype
from bench.measure import TIME_METHOD, PointResult, Protocol, cv, measure_point
from bench.meters import select_meters
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
        })
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

    meters = select_meters(device, cfg.meter.gpu, cfg.meter.host, cfg.meter.powercap_root,
                           cfg.meter.cpu_tdp_w, cfg.meter.cpu_cores)
    for note in meters.notes:
        _say_once(note)
    try:
        fn = case.build(shape, device, dtype, cfg.seed)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        protocol = Protocol(**OmegaConf.to_container(cfg.measure))
        result = measure_point(fn, meters.meters, protocol, sync)
    finally:
        meters.close()
    row = _row(ident, key, case, shape, dtype, result, env.describe(device))
    store.write(row)
    log.info("%s %s: %.4g ms/call, %.4g mJ/token (%s)", case.name, case.shape_fields(shape),
             row["time_per_call_s"] * 1e3, row["energy_per_token_j"] * 1e3, row["energy_method"])
    return row
