"""Typed configuration schemas (registered in Hydra's ConfigStore) and their validation.

YAML in `conf/` only sets values; types are enforced by these dataclasses when Hydra composes,
and `validate` checks what types cannot (ranges, choices, GQA divisibility, device presence,
a writable results directory), raising `ConfigError` with a one-line message naming the field.
No device is probed when a config object is built; only `validate` and `resolve_*` look.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import torch
from hydra.core.config_store import ConfigStore

from bench import results
from bench.clocks import MODES as CLOCK_MODES
from bench.measure import THERMAL_MODES
from bench.meters import GPU_CHOICES, HOST_CHOICES
from kernels import REGISTRY
from kernels.cases import OFFLOAD_MODES, offload_case

TASKS = ("measure", "fit", "report", "plan")
BUSY_CHECKS = ("warn", "error", "off")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class MeasureConf:
    trials: int = 3
    min_window_s: float = 0.5
    warmup_s: float = 0.2
    period_samples: int = 5
    period_timeout_s: float = 5.0
    discard_first: bool = True  # the first trial absorbs the step from idle and is dropped
    phase_shift: bool = True  # trial start offsets spread over one meter update period
    min_updates: int = 10  # a window whose meter updated fewer times is rejected and redone longer
    max_retries: int = 2
    cv_threshold: float = 0.02  # above it (time or energy CV across trials) a point is flagged noisy
    thermal: str = "none"  # none | preheat (run until power is steady) | cooldown (idle until cool)
    preheat_max_s: float = 30.0
    steady_tolerance: float = 0.02
    cooldown_s: float = 10.0
    cooldown_temp_c: float = 45.0
    monitor: bool = True  # a thread counting meter updates and sampling GPU clocks, temperature, power
    monitor_interval_s: float = 0.01


@dataclass
class MeterConf:
    gpu: str = "auto"  # auto | nvml | none
    host: str = "auto"  # auto | rapl | model | none
    powercap_root: str = "/sys/class/powercap"
    cpu_tdp_w: Optional[float] = None  # overrides the TDP looked up for the host model
    cpu_cores: Optional[int] = None  # cores of the part that TDP belongs to


@dataclass
class ClocksConf:
    mode: str = "observe"  # observe (touch nothing) | lock (set, verify, always reset)
    sm_mhz: Optional[int] = None
    mem_mhz: Optional[int] = None
    settle_timeout_s: float = 5.0
    tolerance_mhz: int = 15


@dataclass
class GpuConf:
    clocks: ClocksConf = field(default_factory=ClocksConf)
    busy_check: str = "warn"  # warn | error | off: is anything else using the GPU before we measure
    state_dir: str = "/tmp/energy-bench"  # lock markers, so a killed run's clocks are reset by the next


@dataclass
class LockConf:
    dir: str = "/tmp/energy-bench/locks"  # one lock file per device: one measuring job at a time
    wait_s: float = 3600.0  # how long a second job waits for the device before failing


@dataclass
class CodecarbonConf:
    enabled: bool = False  # codecarbon's own estimate of the run, stored beside ours as a cross-check
    country: str = "USA"  # ISO 3166 alpha-3 code for its offline grid intensity


@dataclass
class GridConf:
    source: str = "ciso_2022"  # <ba>_2022 (shipped hourly traces) | constant | country | csv
    intensity_g_per_kwh: float = 261.0  # constant
    country: str = "USA"  # country: ISO 3166 alpha-3
    path: Optional[str] = None  # csv
    time_column: str = "timestamp"
    intensity_column: str = "intensity_g_per_kwh"
    units: str = "g_per_kwh"
    timezone: Optional[str] = None  # zone of naive timestamps in the csv (default UTC)
    max_gap_h: int = 24  # longer runs of missing hours are refused, shorter ones interpolated
    start: Optional[str] = None  # first hour of the planning period (default: the series' first)


@dataclass
class WorkloadConf:
    path: Optional[str] = None  # default: the shipped Azure conversation trace
    time_column: str = "TIMESTAMP"
    prompt_column: str = "ContextTokens"
    output_column: str = "GeneratedTokens"
    offline_share: float = 0.55  # EcoServe: offline batch work is up to 55% of capacity
    deadline_h: int = 24
    seed: int = 0


@dataclass
class PillarsConf:
    rightsize: bool = True
    reduce: bool = True
    reuse: bool = True
    recycle: bool = True
    shift: bool = True


@dataclass
class PlanConf:
    model: str = "llama3_8b"  # llama3_8b | llama3_70b | qwen3_8b
    hours: int = 24
    pue: float = 1.12
    slo_ttft_s: float = 2.0
    slo_tpot_s: float = 0.1
    slo_attainment: float = 0.99
    gpus: List[str] = field(default_factory=lambda: ["h100_sxm", "a100_sxm", "l4"])
    max_batches: List[int] = field(default_factory=lambda: [32, 128, 512])  # decode batch caps
    prefill_token_budgets: List[int] = field(default_factory=lambda: [0, 8192])  # prompt tokens per step, 0: no cap
    reference: str = "h100_sxm:128"  # the configuration used when rightsize is off
    embodied: str = "default"  # low | default | high (the report shows all three for totals)
    gpu_years: float = 4.0
    host_years: float = 6.0
    recycle_extra_gpu_years: float = 2.0
    cpu_profile: Optional[str] = "cpu-amd-epyc-2core"  # measured host-CPU profile for Reuse (null: no Reuse)
    host_spare_share: float = 0.9
    dram_gb_per_s_per_socket: float = 460.8
    electricity_usd_per_kwh: float = 0.10
    pillars: PillarsConf = field(default_factory=PillarsConf)
    report_dir: Optional[str] = None  # default: results_dir/plan


@dataclass
class OffloadConf:
    """CPU offload of decode (`offload=none|cpu|split|stream` picks `mode`)."""

    mode: str = "none"
    fraction: float = 0.5  # split: share of each request's cache (its oldest tokens) in host memory
    threads: int = 0  # host threads attending the host's share; 0 keeps PyTorch's default
    chunks: int = 4  # stream: request groups copied per step, copy of one overlapping the next's attention


@dataclass
class BenchConf:
    task: str = "measure"
    kernel: str = "prefill.torch"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 1
    seq_len: int = 256
    context_len: int = 1024
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    causal: bool = True
    page_size: int = 16
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps PyTorch's default
    results_dir: str = "results/default"
    results: Optional[str] = None  # fit/report: directory or glob of measured points (default: results_dir)
    hardware: Optional[str] = None  # fit: profile name (default: the measured device's name)
    profile: Optional[str] = None  # report: a profile to render instead of results
    profiles_dir: str = "profiles"
    report_dir: Optional[str] = None  # report: where tables and plots go (default: results_dir/report)
    offload: OffloadConf = field(default_factory=OffloadConf)
    gpu: GpuConf = field(default_factory=GpuConf)
    lock: LockConf = field(default_factory=LockConf)
    codecarbon: CodecarbonConf = field(default_factory=CodecarbonConf)
    grid: GridConf = field(default_factory=GridConf)
    workload: WorkloadConf = field(default_factory=WorkloadConf)
    plan: PlanConf = field(default_factory=PlanConf)
    measure: MeasureConf = field(default_factory=MeasureConf)
    meter: MeterConf = field(default_factory=MeterConf)


class ConfigError(ValueError):
    """An invalid configuration value; the message names the field and what is allowed."""

    def __init__(self, name: str, value: Any, allowed: str):
        super().__init__(f"invalid {name}={value!r}: {allowed}")
        self.field = name


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConf)
    from bench.sweeper import ValidatingSweeperConf

    cs.store(group="hydra/sweeper", name="bench", node=ValidatingSweeperConf, provider="bench")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, value, f"choose one of {', '.join(choices)}")


def _at_least(name: str, value: Any, low: float, what: str = "an integer") -> None:
    if value is None or value < low:
        raise ConfigError(name, value, f"must be {what} >= {low:g}")


def validate(cfg: Any) -> None:
    """Check a composed config (DictConfig or BenchConf); raises `ConfigError`."""
    _choice("task", cfg.task, TASKS)
    if cfg.task in ("fit", "report") and not cfg.profile:
        pattern = cfg.results or cfg.results_dir
        import glob
        from pathlib import Path

        if not glob.glob(pattern) and not Path(pattern).exists():
            raise ConfigError("results", pattern, "matches no directory or file of measured points")
    if cfg.task == "report" and cfg.profile:
        from bench.profiles import available

        if cfg.profile not in available(cfg.profiles_dir):
            raise ConfigError("profile", cfg.profile, f"no such profile in {cfg.profiles_dir}; available: "
                              f"{', '.join(available(cfg.profiles_dir)) or 'none'}")
    if cfg.task == "plan":
        validate_plan(cfg)
    if cfg.hardware is not None and not cfg.hardware.replace("-", "").replace("_", "").isalnum():
        raise ConfigError("hardware", cfg.hardware, "must be a plain name (letters, digits, - and _)")
    if cfg.kernel not in REGISTRY:
        raise ConfigError("kernel", cfg.kernel, f"choose one of {', '.join(REGISTRY.names())}")
    _choice("device", cfg.device, DEVICES)
    _choice("dtype", cfg.dtype, ("auto",) + tuple(DTYPES))
    for name in ("batch_size", "seq_len", "context_len", "heads", "kv_heads", "head_dim", "page_size"):
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
    try:
        case_name = offload_case(cfg.kernel, cfg.offload.mode)
    except ValueError as err:
        raise ConfigError("offload", cfg.offload.mode, str(err)) from None
    _at_least("measure.trials", cfg.measure.trials, 1)
    if not cfg.measure.min_window_s > 0:
        raise ConfigError("measure.min_window_s", cfg.measure.min_window_s, "must be > 0 seconds")
    _at_least("measure.warmup_s", cfg.measure.warmup_s, 0, "a number of seconds")
    _at_least("measure.period_samples", cfg.measure.period_samples, 2)
    if not cfg.measure.period_timeout_s > 0:
        raise ConfigError("measure.period_timeout_s", cfg.measure.period_timeout_s, "must be > 0 seconds")
    _at_least("measure.min_updates", cfg.measure.min_updates, 1)
    _at_least("measure.max_retries", cfg.measure.max_retries, 0)
    if not cfg.measure.cv_threshold > 0:
        raise ConfigError("measure.cv_threshold", cfg.measure.cv_threshold, "must be > 0 (e.g. 0.02 for 2%)")
    _choice("measure.thermal", cfg.measure.thermal, THERMAL_MODES)
    for name in ("preheat_max_s", "cooldown_s"):
        _at_least(f"measure.{name}", getattr(cfg.measure, name), 0, "a number of seconds")
    if not 0 < cfg.measure.steady_tolerance < 1:
        raise ConfigError("measure.steady_tolerance", cfg.measure.steady_tolerance, "must be in (0, 1)")
    if not cfg.measure.monitor_interval_s > 0:
        raise ConfigError("measure.monitor_interval_s", cfg.measure.monitor_interval_s, "must be > 0 seconds")
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
    if cfg.codecarbon.enabled and not (len(cfg.codecarbon.country) == 3 and cfg.codecarbon.country.isalpha()):
        raise ConfigError("codecarbon.country", cfg.codecarbon.country, "must be an ISO 3166 alpha-3 code such as USA or FRA")
    _choice("meter.gpu", cfg.meter.gpu, GPU_CHOICES)
    _choice("meter.host", cfg.meter.host, HOST_CHOICES)
    if cfg.meter.cpu_tdp_w is not None and not cfg.meter.cpu_tdp_w > 0:
        raise ConfigError("meter.cpu_tdp_w", cfg.meter.cpu_tdp_w, "must be > 0 watts or null")
    if cfg.meter.cpu_cores is not None:
        _at_least("meter.cpu_cores", cfg.meter.cpu_cores, 1)
    # Probing the machine comes last, after every pure check.
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", "cuda", "no CUDA GPU is visible here; choose auto or cpu")
    if clocks.mode == "lock" and resolve_device(cfg.device).type != "cuda":
        raise ConfigError("gpu.clocks.mode", "lock", "needs a CUDA device (clocks are locked through NVML)")
    if cfg.meter.gpu == "nvml" and resolve_device(cfg.device).type != "cuda":
        raise ConfigError("meter.gpu", "nvml", "needs a CUDA device; choose auto or none")
    if clocks.mode == "lock":
        _check_clocks_supported(cfg)
    case = REGISTRY.get(case_name)
    reason = case.unsupported_reason(resolve_device(cfg.device))
    if reason:
        raise ConfigError("kernel" if case_name == cfg.kernel else "offload", cfg.kernel if case_name == cfg.kernel
                          else cfg.offload.mode, reason)
    try:
        results.check_writable(cfg.results_dir)
    except results.NotWritable as err:
        raise ConfigError("results_dir", cfg.results_dir, f"must be a writable directory ({err})") from None


def _check_clocks_supported(cfg: Any) -> None:
    """Ask NVML which clocks this GPU supports, so a bad value fails before any job runs."""
    from bench.clocks import ClockRequest, UnsupportedClock, check_supported, supported_clocks_mhz
    from bench.meters import open_nvml

    nvml, handle, _ = open_nvml(resolve_device(cfg.device))
    request = ClockRequest(mode="lock", sm_mhz=cfg.gpu.clocks.sm_mhz, mem_mhz=cfg.gpu.clocks.mem_mhz)
    try:
        check_supported(request, supported_clocks_mhz(nvml, handle))
    except UnsupportedClock as err:
        raise ConfigError(f"gpu.clocks.{err.field}", err.value, f"not supported by this GPU; valid: {err.valid}") from None


def validate_plan(cfg: Any) -> None:
    """task=plan inputs, including the grid and trace files (read here so bad ones fail first)."""
    from bench.carbon import embodied, grid, serving, workload

    p = cfg.plan
    _choice("plan.model", p.model, tuple(serving.PRESETS))
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
    if not 0 < p.slo_attainment <= 1:
        raise ConfigError("plan.slo_attainment", p.slo_attainment, "must be in (0, 1]")
    if not 0 < p.host_spare_share <= 1:
        raise ConfigError("plan.host_spare_share", p.host_spare_share, "must be in (0, 1]")
    _choice("plan.embodied", p.embodied, embodied.LEVELS)
    if p.cpu_profile:
        from bench.profiles import available

        if p.cpu_profile not in available(cfg.profiles_dir):
            raise ConfigError("plan.cpu_profile", p.cpu_profile, f"no such profile in {cfg.profiles_dir} (available: "
                              f"{', '.join(available(cfg.profiles_dir)) or 'none'}); null disables Reuse")
    w = cfg.workload
    _at_least("workload.deadline_h", w.deadline_h, 1)
    try:
        workload.load(w.path, w.time_column, w.prompt_column, w.output_column, w.offline_share, w.seed)
    except workload.WorkloadError as err:
        raise ConfigError("workload", w.path or "default trace", str(err)) from None
    try:
        grid.from_config(cfg.grid, p.hours)
    except grid.GridError as err:
        raise ConfigError("grid", cfg.grid.source, str(err)) from None
