"""Typed configuration schema, registered in Hydra's ConfigStore.

Each stage owns the dataclass of its plug point (`Protocol` in `bench.measure.protocol`,
`MeterConf` beside the meter registry, `GridConf` beside the grid sources, ...); this file
composes them. YAML in `conf/` only sets values; types are enforced when Hydra composes, and
`bench.cli.validate` checks what types cannot. No device is probed when a config object is
built; only validation and `resolve_*` look.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import OmegaConf, open_dict

from bench.carbon.inputs.grid import GridConf
from bench.carbon.inputs.workload import WorkloadConf
from bench.carbon.planning.pillars import Pillars
from bench.carbon.validation.measurements import ValidateConf
from bench.measure.clocks import GpuConf
from bench.measure.codecarbon_span import CodecarbonConf
from bench.measure.lock import LockConf
from bench.measure.meters import MeterConf
from bench.measure.protocol import Protocol
from bench.profile.store import PROFILES_DIR as SHIPPED_PROFILES_DIR
from bench.tasks import NAMES as TASKS  # noqa: F401  (the choices cli.validate checks task= against)
from kernels.arch import ARCHS

DEFAULT_PROFILES_DIR = "profiles"  # relative to the working directory; the shipped one where it has none (`to_typed`)
_DEFAULT_DIMS = ARCHS["llama3_8b"]  # the layer widths of the linear and layer cases, unless arch= sets them


DEVICES = ("auto", "cpu", "cuda")


@dataclass
class KernelConf:
    """`kernel=<case>` picks a registered case (each one a config option of the `kernel` group,
    stored from the registry); `kernel=custom kernel.target=pkg.mod:make_case` a user's factory."""

    name: str = "prefill.torch"
    target: Optional[str] = None  # custom: `module:function` returning a kernels.Case


@dataclass
class PlanConf:
    model: str = "llama3_8b"  # a serving preset (bench.carbon.serving.PRESETS): its key or a Hugging Face id
    hours: int = 24
    pue: float = 1.12
    slo_ttft_s: float = 2.0
    slo_tpot_s: float = 0.1
    slo_attainment: float = 0.99
    slo_tpot_metric: str = "mean_tpot"  # mean_tpot (a request's mean time per output token) | itl (its slo_percentile-th token gap)
    slo_percentile: float = 99.0  # the tail percentile of itl, and of the report's latency columns
    slo_scope: str = "hour"  # hour: a plan must meet the SLO in every hour; period: over the whole period
    routing: str = "round_robin"  # round_robin | least_loaded: how each hour's requests reach the replicas
    workers: int = 0  # processes solving plans side by side: 0 one per core, 1 serially here
    # Seconds of MILP solving one plan may take, its re-planning rounds together; past them it keeps
    # the best plan and bound found (each later solve gets a few seconds), flagged and noted. None: 10 s
    # up to a week, 25 s beyond (why: `planning.options`).
    solve_budget_s: Optional[float] = None
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
    pillars: Pillars = field(default_factory=Pillars)
    report_dir: Optional[str] = None  # default: results_dir/plan
    # A measurement file (ML.ENERGY v3 format) to validate the plan's device model of the GPU type it
    # measured against, shown in the plan report (null: no validation section).
    validation_measurements: Optional[str] = None


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
    kernel: KernelConf = field(default_factory=KernelConf)
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 1
    seq_len: int = 256
    context_len: int = 1024
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    hidden: int = _DEFAULT_DIMS.hidden  # linear and layer cases: the residual stream's width
    ffn: int = _DEFAULT_DIMS.ffn  # linear and layer cases: the MLP's width
    causal: bool = True
    page_size: int = 16
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 keeps PyTorch's default
    results_dir: str = "results/default"
    results: Optional[str] = None  # fit/report: directory or glob of measured points (default: results_dir)
    hardware: Optional[str] = None  # fit: profile name (default: the measured device's name)
    profile: Optional[str] = None  # report: a profile to render instead of results
    profiles_dir: str = DEFAULT_PROFILES_DIR
    report_dir: Optional[str] = None  # report: where tables and plots go (default: results_dir/report)
    offload: OffloadConf = field(default_factory=OffloadConf)
    gpu: GpuConf = field(default_factory=GpuConf)
    lock: LockConf = field(default_factory=LockConf)
    codecarbon: CodecarbonConf = field(default_factory=CodecarbonConf)
    grid: GridConf = field(default_factory=GridConf)
    workload: WorkloadConf = field(default_factory=WorkloadConf)
    plan: PlanConf = field(default_factory=PlanConf)
    validate: ValidateConf = field(default_factory=ValidateConf)
    measure: Protocol = field(default_factory=Protocol)
    meter: MeterConf = field(default_factory=MeterConf)


def to_typed(cfg: Any) -> BenchConf:
    """The composed config as the typed dataclass, the only form that travels below `bench.cli`
    (Hydra's own `hydra` node, present in sweep configs, is dropped)."""
    if isinstance(cfg, BenchConf):
        return cfg
    if "hydra" in cfg:
        cfg = copy.copy(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
    typed = OmegaConf.to_object(cfg)
    # The default profiles folder read from anywhere: the shipped one where the working directory has
    # none (a plan run from another folder refused its default CPU profile as missing). task=fit writes
    # there, so it keeps the folder as given.
    if typed.profiles_dir == DEFAULT_PROFILES_DIR and typed.task != "fit" and not Path(DEFAULT_PROFILES_DIR).is_dir():
        typed.profiles_dir = str(SHIPPED_PROFILES_DIR)
    return typed
