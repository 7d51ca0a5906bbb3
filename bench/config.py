"""Typed configuration schemas, registered in Hydra's ConfigStore.

YAML in `conf/` only sets values; types are enforced by these dataclasses when Hydra composes,
and `bench.validation` checks what types cannot. No device is probed when a config object is
built; only validation and `resolve_*` look.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import torch
from hydra.core.config_store import ConfigStore


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
