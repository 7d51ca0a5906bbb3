"""Validation of the typed config: what types cannot check (ranges, choices, GQA divisibility,
what the case takes, device presence, a writable results directory, readable grid and trace
files), raising `ConfigError` with a one-line message naming the field. Pure checks come first,
probes of the machine last. Choices are read from the registries that run them (kernel cases,
meters, grid sources), never listed here a second time.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import sys
from pathlib import Path
from typing import Any

import torch

from bench.cli.schema import DEVICES, TASKS, BenchConf, to_typed
from bench.measure import results
from bench.measure.clocks import BUSY_CHECKS
from bench.measure.clocks import MODES as CLOCK_MODES
from bench.measure.environment import DTYPES, resolve_device
from bench.measure.meters import CHOICES as METER_CHOICES
from bench.measure.protocol import protocol_problem
from bench.tasks.measure import case_of, shape_of
from kernels import REGISTRY, Case
from kernels.custom import CUSTOM_KERNEL, CustomCaseError
from kernels.registry import OFFLOAD_MODES


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str):
        super().__init__(f"invalid {name}={value!r}: {allowed}")
        self.field = name


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, value, f"choose one of {', '.join(choices)}")


def _at_least(name: str, value: Any, low: float, what: str = "an integer") -> None:
    # NaN compares false with everything and inf would wait forever: both are refused here.
    if value is None or not math.isfinite(value) or value < low:
        raise ConfigError(name, value, f"must be {what} >= {low:g}" + ("" if what == "an integer" else " (finite)"))


def exit_if_invalid(cfg: Any, context: str = "") -> None:
    """Validate one composed config; on error print one line and exit with status 2."""
    try:
        validate(to_typed(cfg))
    except ConfigError as err:
        print(f"bench: {err}{context}", file=sys.stderr)
        raise SystemExit(2) from None


def _case(cfg: BenchConf) -> Case:
    """The case the config measures, or the field that is wrong."""
    kernel = cfg.kernel
    if kernel.name != CUSTOM_KERNEL and kernel.name not in REGISTRY:
        raise ConfigError("kernel", kernel.name, f"choose one of {', '.join(REGISTRY.names() + [CUSTOM_KERNEL])}")
    if kernel.name != CUSTOM_KERNEL and kernel.target is not None:
        raise ConfigError("kernel.target", kernel.target, "is only read with kernel=custom")
    if kernel.name == CUSTOM_KERNEL and cfg.offload.mode != "none":
        raise ConfigError("offload", cfg.offload.mode, "applies to the built-in decode kernels, not kernel=custom")
    try:
        return case_of(cfg)
    except CustomCaseError as err:
        raise ConfigError("kernel.target", kernel.target, str(err)) from None
    except ValueError as err:
        raise ConfigError("offload", cfg.offload.mode, str(err)) from None


def validate(cfg: BenchConf) -> None:
    """Check a typed config; raises `ConfigError`."""
    _choice("task", cfg.task, TASKS)
    if cfg.task in ("fit", "report") and not cfg.profile:
        pattern = cfg.results or cfg.results_dir
        if not glob.glob(pattern) and not Path(pattern).exists():
            raise ConfigError("results", pattern, "matches no directory or file of measured points")
    if cfg.task == "report" and cfg.profile:
        from bench.profile.store import available

        if cfg.profile not in available(cfg.profiles_dir):
            raise ConfigError("profile", cfg.profile, f"no such profile in {cfg.profiles_dir}; available: "
                              f"{', '.join(available(cfg.profiles_dir)) or 'none'}")
    _grid_settings(cfg)
    if cfg.task == "plan":
        validate_plan(cfg)
    if cfg.task == "validate":
        validate_validation(cfg)
    if cfg.hardware is not None and not cfg.hardware.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("hardware", cfg.hardware, "must be a plain name (letters, digits, - and _)")
    _choice("device", cfg.device, DEVICES)
    _choice("dtype", cfg.dtype, ("auto",) + tuple(DTYPES))
    for name in ("batch_size", "seq_len", "context_len", "heads", "kv_heads", "head_dim", "page_size", "hidden", "ffn"):
        _at_least(name, getattr(cfg, name), 1)
    _at_least("threads", cfg.threads, 0)
    if cfg.heads % cfg.kv_heads:
        divisors = [d for d in range(1, cfg.heads + 1) if cfg.heads % d == 0]
        raise ConfigError("kv_heads", cfg.kv_heads,
                          f"heads={cfg.heads} must be a multiple of kv_heads; allowed kv_heads: {divisors}")
    _choice("offload", cfg.offload.mode, OFFLOAD_MODES)
    if not 0.0 <= cfg.offload.fraction <= 1.0:
        raise ConfigError("offload.fraction", cfg.offload.fraction, "must be in [0, 1] (share of the cache on the host)")
    _at_least("offload.threads", cfg.offload.threads, 0)
    _at_least("offload.chunks", cfg.offload.chunks, 1)
    case = _case(cfg)
    problem = protocol_problem(cfg.measure)
    if problem:
        name, value, why = problem
        raise ConfigError(f"measure.{name}", value, why)
    clocks = cfg.gpu.clocks
    _choice("gpu.clocks.mode", clocks.mode, CLOCK_MODES)
    for name in ("sm_mhz", "mem_mhz"):
        if getattr(clocks, name) is not None:
            _at_least(f"gpu.clocks.{name}", getattr(clocks, name), 1)
    if clocks.mode == "lock" and clocks.sm_mhz is None and clocks.mem_mhz is None:
        raise ConfigError("gpu.clocks.mode", "lock", "needs gpu.clocks.sm_mhz and/or gpu.clocks.mem_mhz")
    if clocks.mode == "observe" and (clocks.sm_mhz is not None or clocks.mem_mhz is not None):
        raise ConfigError("gpu.clocks.sm_mhz", clocks.sm_mhz if clocks.sm_mhz is not None else clocks.mem_mhz,
                          "is only applied with gpu.clocks.mode=lock (observe mode never changes clocks)")
    _choice("gpu.busy_check", cfg.gpu.busy_check, BUSY_CHECKS)
    _at_least("lock.wait_s", cfg.lock.wait_s, 0, "a number of seconds")
    _at_least("lock.poll_s", cfg.lock.poll_s, 0.001, "a number of seconds")
    if cfg.codecarbon.enabled and not (len(cfg.codecarbon.country) == 3 and cfg.codecarbon.country.isalpha()):
        raise ConfigError("codecarbon.country", cfg.codecarbon.country, "must be an ISO 3166 alpha-3 code such as USA or FRA")
    _choice("meter.gpu", cfg.meter.gpu, tuple(METER_CHOICES["gpu"]))
    _choice("meter.host", cfg.meter.host, tuple(METER_CHOICES["host"]))
    if cfg.meter.cpu_tdp_w is not None and not cfg.meter.cpu_tdp_w > 0:
        raise ConfigError("meter.cpu_tdp_w", cfg.meter.cpu_tdp_w, "must be > 0 watts or null")
    if cfg.meter.cpu_cores is not None:
        _at_least("meter.cpu_cores", cfg.meter.cpu_cores, 1)
    # Probing the machine comes last, after every pure check.
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda", "no CUDA GPU is visible here; choose auto or cpu")
    if clocks.mode == "lock" and resolve_device(cfg.device).type != "cuda":
        raise ConfigError("gpu.clocks.mode", "lock", "needs a CUDA device (clocks are locked through NVML)")
    if METER_CHOICES["gpu"][cfg.meter.gpu].needs_cuda and resolve_device(cfg.device).type != "cuda":
        raise ConfigError("meter.gpu", "nvml", "needs a CUDA device; choose auto or none")
    if clocks.mode == "lock":
        _check_clocks_supported(cfg)
    device = resolve_device(cfg.device)
    by_offload = cfg.offload.mode != "none"
    reason = case.unsupported_reason(device)
    if reason:
        raise ConfigError("offload" if by_offload else "kernel", cfg.offload.mode if by_offload else cfg.kernel.name,
                          reason)
    shape_reason = case.unsupported_shape_reason(shape_of(cfg), str(_dtype(cfg, device)).removeprefix("torch."))
    if shape_reason:
        name, why = shape_reason
        raise ConfigError(name, getattr(cfg, name), why)
    if case.uses_triton and device.type == "cpu" and _dtype(cfg, device) == torch.bfloat16:
        # Triton's interpreter computes bf16 dots wrongly: a point would be garbage marked ok.
        raise ConfigError("dtype", "bfloat16", "Triton cases on the CPU run in Triton's interpreter, whose bf16 dots "
                          "are wrong; use float16 or float32, a torch case, or a GPU")
    if cfg.task == "measure":
        _check_interpreter_work(cfg, case)
    dirs = [("results_dir", cfg.results_dir)]
    if cfg.task == "measure":
        dirs += [("lock.dir", cfg.lock.dir), ("gpu.state_dir", cfg.gpu.state_dir)]
    # Each task's own output folder, where set (else it is under results_dir): a regular file there
    # or above it was a traceback when the task came to write its files.
    outputs = {"validate": ("validate.out_dir", cfg.validate.out_dir), "plan": ("plan.report_dir", cfg.plan.report_dir),
               "report": ("report_dir", cfg.report_dir), "fit": ("profiles_dir", cfg.profiles_dir)}
    if cfg.task in outputs and outputs[cfg.task][1]:
        dirs.append(outputs[cfg.task])
    for name, folder in dirs:
        try:
            results.check_writable(folder)
        except results.NotWritable as err:
            raise ConfigError(name, folder, f"must be a writable directory ({err})") from None


# Triton's interpreter runs kernels as numpy per program: about 6e7 flop/s for the prefill kernel
# on this project's 2-core CI machine (2026-11-24), so a point of a real shape takes hours. Above
# about 10 s per call it is refused.
INTERPRETER_FLOP_PER_S = 6e7
INTERPRETER_MAX_FLOPS = 10 * INTERPRETER_FLOP_PER_S


def _dtype(cfg: BenchConf, device: torch.device) -> torch.dtype:
    from bench.measure.environment import resolve_dtype

    return resolve_dtype(cfg.dtype, device)


def _check_interpreter_work(cfg: BenchConf, case: Case) -> None:
    if not case.uses_triton or resolve_device(cfg.device).type != "cpu":
        return
    flops = case.flops(shape_of(cfg))
    if flops > INTERPRETER_MAX_FLOPS:
        raise ConfigError("kernel", case.name, f"would run in Triton's CPU interpreter: {flops:.2g} flops per call, "
                          f"about {flops / INTERPRETER_FLOP_PER_S:.0f} s each at ~{INTERPRETER_FLOP_PER_S:.0e} flop/s "
                          f"(limit {INTERPRETER_MAX_FLOPS:.0e} flops); use a GPU, a torch kernel, or a smaller shape")


def _check_clocks_supported(cfg: BenchConf) -> None:
    """Ask NVML which clocks this GPU supports, so a bad value fails before any job runs."""
    from bench.measure.clocks import (
        ClockRequest,
        UnsupportedClock,
        check_supported,
        supported_clocks_mhz,
    )
    from bench.measure.meters import open_nvml

    nvml, handle, _ = open_nvml(resolve_device(cfg.device))
    request = ClockRequest(mode="lock", sm_mhz=cfg.gpu.clocks.sm_mhz, mem_mhz=cfg.gpu.clocks.mem_mhz)
    try:
        check_supported(request, supported_clocks_mhz(nvml, handle))
    except UnsupportedClock as err:
        raise ConfigError(f"gpu.clocks.{err.field}", err.value, f"not supported by this GPU; valid: {err.valid}") from None


def _grid_settings(cfg: BenchConf) -> None:
    """`grid.scope` and `grid.timezone`, for every task (a measurement's closing carbon estimate
    reads the grid too); the files themselves are read where a task plans with them."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if cfg.grid.timezone is not None:
        try:
            ZoneInfo(cfg.grid.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("grid.timezone", cfg.grid.timezone, "is not a time zone (e.g. America/New_York, "
                              "Europe/Paris)") from None
    if cfg.grid.scope is None:
        return
    from bench.carbon.inputs import grid

    problem = grid.scope_problem(cfg.grid)
    if problem:
        raise ConfigError("grid.scope", cfg.grid.scope, problem)


def validate_plan(cfg: BenchConf) -> None:
    """task=plan inputs, including the grid and trace files (read here so bad ones fail first)."""
    from bench.carbon import serving
    from bench.carbon.inputs import embodied, grid, workload
    from bench.carbon.planning.options import ROUTINGS, SLO_SCOPES
    from bench.carbon.serving.result import TPOT_METRICS

    p = cfg.plan
    if serving.preset_key(p.model) is None:
        raise ConfigError("plan.model", p.model, serving.MODEL_CHOICES)
    for gpu in p.gpus:
        if gpu not in embodied.gpus().index:
            raise ConfigError("plan.gpus", gpu, f"choose among {', '.join(embodied.gpus().index)}")
    if not p.gpus:
        raise ConfigError("plan.gpus", list(p.gpus), "needs at least one GPU type")
    for b in p.max_batches:
        _at_least("plan.max_batches", b, 1)
    for b in p.prefill_token_budgets:
        _at_least("plan.prefill_token_budgets", b, 0)
    if 0 not in p.prefill_token_budgets:
        raise ConfigError("plan.prefill_token_budgets", list(p.prefill_token_budgets),
                          "must include 0 (no cap): the reference configuration has none")
    gpu, _, batch = p.reference.partition(":")
    if gpu not in p.gpus or not batch.isdigit() or int(batch) not in p.max_batches:
        raise ConfigError("plan.reference", p.reference, f"must be <gpu>:<max_batch> from plan.gpus {list(p.gpus)} "
                          f"and plan.max_batches {list(p.max_batches)}")
    _at_least("plan.hours", p.hours, 1)
    if not p.pue >= 1.0:
        raise ConfigError("plan.pue", p.pue, "must be >= 1 (facility energy / IT energy)")
    for name in ("slo_ttft_s", "slo_tpot_s", "gpu_years", "host_years", "electricity_usd_per_kwh",
                 "dram_gb_per_s_per_socket"):
        if not getattr(p, name) > 0:
            raise ConfigError(f"plan.{name}", getattr(p, name), "must be > 0")
    if not (math.isfinite(p.recycle_extra_gpu_years) and p.recycle_extra_gpu_years >= 0):
        raise ConfigError("plan.recycle_extra_gpu_years", p.recycle_extra_gpu_years,
                          "must be >= 0 years (Recycle extends a GPU's life; it cannot shorten it)")
    if not 0 < p.slo_attainment <= 1:
        raise ConfigError("plan.slo_attainment", p.slo_attainment, "must be in (0, 1]")
    if not 0 < p.host_spare_share <= 1:
        raise ConfigError("plan.host_spare_share", p.host_spare_share, "must be in (0, 1]")
    _choice("plan.embodied", p.embodied, embodied.LEVELS)
    _choice("plan.slo_scope", p.slo_scope, SLO_SCOPES)
    _choice("plan.slo_tpot_metric", p.slo_tpot_metric, TPOT_METRICS)
    if not 0 < p.slo_percentile <= 100:
        raise ConfigError("plan.slo_percentile", p.slo_percentile, "must be in (0, 100]")
    _choice("plan.routing", p.routing, ROUTINGS)
    if not isinstance(p.workers, int) or p.workers < 0:
        raise ConfigError("plan.workers", p.workers, "must be a whole number >= 0 (0: one process per core)")
    if p.solve_budget_s is not None and (not isinstance(p.solve_budget_s, (int, float))
                                         or not math.isfinite(p.solve_budget_s) or p.solve_budget_s <= 0):
        raise ConfigError("plan.solve_budget_s", p.solve_budget_s, "must be a number of seconds > 0")
    from bench.carbon.serving.device import measured_profiles
    from bench.profile import store
    from bench.profile.build import ProfileError

    if p.cpu_profile:
        if p.cpu_profile not in store.available(cfg.profiles_dir):
            raise ConfigError("plan.cpu_profile", p.cpu_profile, f"no such profile in {cfg.profiles_dir} (available: "
                              f"{', '.join(store.available(cfg.profiles_dir)) or 'none'}); null disables Reuse")
        try:
            store.load(p.cpu_profile, cfg.profiles_dir)
        except ProfileError as err:
            raise ConfigError("plan.cpu_profile", p.cpu_profile, str(err)) from None
    try:  # the GPU profiles the plan will read, each readable (a cut-off one was a traceback mid-plan)
        measured = measured_profiles(list(p.gpus), cfg.profiles_dir)
    except ProfileError as err:
        raise ConfigError("profiles_dir", cfg.profiles_dir, str(err)) from None
    if p.validation_measurements is not None:
        from bench.carbon.validation.measurements import ValidateConf
        from bench.carbon.validation.report import gpu_of

        rows = _measurements("plan.validation_measurements", p.validation_measurements)
        gpu = gpu_of(rows)
        # Rows the plan's model could not have run on that GPU are bad input for the report's replay;
        # a GPU type the plan takes from a measured profile is not replayed there (`plan_section`).
        if gpu in p.gpus and gpu not in measured:
            refuse_rows_vllm_could_not_run("plan.validation_measurements", ValidateConf(
                measurements=p.validation_measurements, model=p.model, gpu=gpu), rows)
    w = cfg.workload
    _at_least("workload.deadline_h", w.deadline_h, 1)
    _at_least("workload.seed", w.seed, 0)
    _at_least("grid.max_gap_h", cfg.grid.max_gap_h, 0)
    if cfg.grid.start is not None:
        import pandas as pd

        try:
            start = pd.Timestamp(cfg.grid.start)
        except (ValueError, TypeError, OverflowError):
            start = pd.NaT
        if pd.isna(start):
            raise ConfigError("grid.start", cfg.grid.start, "is not a date and time (e.g. 2022-01-01 or 2022-06-01T08:00)")
    _choice("workload.time_unit", w.time_unit, tuple(workload.TIME_UNITS_S))
    _choice("workload.over_context", w.over_context, workload.OVER_CONTEXT)
    try:
        workload.fit_to_context(workload.from_config(w), serving.preset(p.model).context_tokens, w.over_context)
    except workload.WorkloadError as err:
        raise ConfigError("workload", w.path or "default trace", str(err)) from None
    try:
        grid.from_config(cfg.grid, p.hours)
    except grid.GridError as err:
        raise ConfigError("grid", cfg.grid.source, str(err)) from None


def _measurements(name: str, path: Any):
    from bench.carbon.validation import measurements

    try:
        return measurements.read(path)
    except measurements.MeasurementsError as err:
        raise ConfigError(name, path, str(err)) from None


def refuse_rows_vllm_could_not_run(name: str, v: Any, rows: Any) -> None:
    """vLLM will not start where its KV cache cannot hold one request of its longest length: a row
    the replay could not have measured. Judged without the runtime reserve, which is sourced on one
    H100 (smaller GPUs' runtimes take less), so a file vLLM ran is never refused for it."""
    from bench.carbon import serving
    from bench.carbon.validation.replay import serving_memory_bytes

    model = serving.preset(v.model)
    longest = min(model.context_tokens, v.max_model_len_tokens)
    bare = dataclasses.replace(v, runtime_reserve_gib=0.0, runtime_reserve_tp_gib=0.0)
    for tp, b in sorted({(int(t), int(b)) for t, b in zip(rows["num_gpus"], rows["max_num_seqs"])}):
        need = (model.kv_bytes_per_token * model.kv_copies(tp) * float(model.attended_context(longest))
                + model.state_bytes_per_seq)  # and a hybrid's Mamba state
        room = serving_memory_bytes(v.gpu, tp, bare, model, b) - model.weight_bytes
        if room < need:
            raise ConfigError(name, v.measurements,
                              f"the row of num_gpus {tp}, max_num_seqs {b}: {v.model} on {tp} x {v.gpu} leaves "
                              f"{max(room, 0.0) / 2 ** 30:.2f} GiB of KV cache after its weights "
                              f"({model.weight_bytes / 2 ** 30:.1f} GiB) and vLLM's activation peak at "
                              f"gpu_memory_utilization {v.gpu_memory_utilization:g}, before any runtime reserve; "
                              f"one {longest}-token request needs {need / 2 ** 30:.2f} GiB (vLLM would not start)")


def validate_validation(cfg: BenchConf) -> None:
    """task=validate inputs, the measurement file read here so a bad one fails before any work."""
    from bench.carbon import serving
    from bench.carbon.inputs import embodied

    v = cfg.validate
    if v.measurements is None:
        raise ConfigError("validate.measurements", None, "required: a csv in the ML.ENERGY v3 format")
    rows = _measurements("validate.measurements", v.measurements)
    if serving.preset_key(v.model) is None:
        raise ConfigError("validate.model", v.model, serving.MODEL_CHOICES)
    if v.gpu not in embodied.gpus().index:
        raise ConfigError("validate.gpu", v.gpu, f"choose one of {', '.join(embodied.gpus().index)}")
    for name, value in [("itl_slo_s", v.itl_slo_s)] + [("extra_itl_slos_s", x) for x in v.extra_itl_slos_s]:
        if value is None or not math.isfinite(value) or not value > 0:
            raise ConfigError(f"validate.{name}", value, "must be > 0 seconds (finite)")
    _choice("validate.calibration", v.calibration, ("auto", "refit", "none"))
    if not (math.isfinite(v.prompt_mean_tokens) and v.prompt_mean_tokens >= 1):
        raise ConfigError("validate.prompt_mean_tokens", v.prompt_mean_tokens, "must be >= 1 token (finite)")
    if not (math.isfinite(v.prompt_sigma) and v.prompt_sigma >= 0):
        raise ConfigError("validate.prompt_sigma", v.prompt_sigma, "must be >= 0 (the log-sd of prompt lengths)")
    _at_least("validate.max_output_tokens", v.max_output_tokens, 1)
    _at_least("validate.max_num_batched_tokens", v.max_num_batched_tokens, 1)
    _at_least("validate.max_model_len_tokens", v.max_model_len_tokens, 2)
    _at_least("validate.num_requests", v.num_requests, 0)
    if not 0 < v.gpu_memory_utilization <= 1:
        raise ConfigError("validate.gpu_memory_utilization", v.gpu_memory_utilization, "must be in (0, 1]")
    for name in ("runtime_reserve_gib", "runtime_reserve_tp_gib"):
        value = getattr(v, name)
        if value is None or not math.isfinite(value) or value < 0:
            raise ConfigError(f"validate.{name}", value, "must be >= 0 GiB (finite)")
    refuse_rows_vllm_could_not_run("validate.measurements", v, rows)
    if v.calibration == "refit" and rows["num_gpus"].nunique() > 1:
        raise ConfigError("validate.calibration", "refit", "needs one num_gpus throughout the file")
    if v.calibration == "refit":
        from bench.carbon.validation.calibrate import fitted_parameters

        names = fitted_parameters(v.gpu)
        if len(rows) < len(names):  # each row one operating point: fewer cannot pin the parameters down
            raise ConfigError("validate.calibration", "refit",
                              f"fits {len(names)} parameters ({', '.join(names)}) and needs at least as many rows "
                              f"(max batches); {v.measurements} has {len(rows)}")
