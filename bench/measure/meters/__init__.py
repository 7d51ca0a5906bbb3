"""Energy meters, one per file, and the one registry of the choices `meter.gpu=` / `meter.host=`
offer: validation lists the same choices the selection runs.

A choice opens zero or more meters for a device (`auto` may fall back, and says so in a note);
each meter is a small class (`is_available()`, `start()`, `stop() -> Reading`, `poll()`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from bench.measure.meters.base import Meter, MeterUnavailable, Reading
from bench.measure.meters.cpu_time_model import (CpuTimeModelMeter, core_power, cpu_model_name, os_cores_per_socket,
                                                 tdp_table)
from bench.measure.meters.nvml import open_gpu
from bench.measure.meters.nvml_counter import NvmlEnergyMeter
from bench.measure.meters.nvml_power import NvmlPowerMeter
from bench.measure.meters.rapl import RaplMeter

__all__ = ["Meter", "MeterUnavailable", "Reading", "MeterConf", "MeterSet", "CHOICES", "select_meters", "open_nvml"]


@dataclass
class MeterConf:
    """Which meters measure a point (`meter.*`)."""

    gpu: str = "auto"  # auto | nvml | none
    host: str = "auto"  # auto | rapl | model | none
    powercap_root: str = "/sys/class/powercap"
    cpu_tdp_w: Optional[float] = None  # overrides the TDP looked up for the host model
    cpu_cores: Optional[int] = None  # cores of the part that TDP belongs to


@dataclass
class MeterSet:
    meters: list[Meter]
    notes: list[str] = field(default_factory=list)
    nvml: Any = None  # the pynvml module and the GPU's handle, for clocks and telemetry
    gpu_handle: Any = None
    gpu_id: str | None = None  # NVML UUID where known, else the index

    def close(self) -> None:
        for meter in self.meters:
            meter.close()


def open_nvml(device: torch.device) -> tuple[Any, Any, str]:
    """`(pynvml, handle, id)` of the GPU torch calls `device`."""
    import pynvml  # from nvidia-ml-py

    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    handle = open_gpu(pynvml, index, f"GPU-{uuid}" if uuid else None)
    return pynvml, handle, f"GPU-{uuid}" if uuid else f"cuda{index}"


def gpu_meter(nvml: Any, handle: Any, domain: str = "gpu") -> Meter:
    """The energy counter where the GPU has one, else the labelled power-integration fallback."""
    counter = NvmlEnergyMeter(nvml, handle, domain)
    if counter.is_available():
        return counter
    sampler = NvmlPowerMeter(nvml, handle, domain)
    if sampler.is_available():
        return sampler
    raise MeterUnavailable("this GPU reports neither total energy nor power through NVML")


@functools.cache
def _core_power(cpu_tdp_w: float | None, cpu_cores: int | None):
    return core_power(cpu_model_name(), tdp_table(), cpu_tdp_w, cpu_cores or os_cores_per_socket())


Opened = tuple[list[Meter], list[str]]  # meters and notes for the user


@dataclass(frozen=True)
class Choice:
    """One value of `meter.gpu=` or `meter.host=`: what it measures and how it opens."""

    name: str
    describes: str
    open: Callable[[torch.device, MeterConf], Opened]
    needs_cuda: bool = False


def _nvml(device: torch.device, conf: MeterConf) -> Opened:
    if device.type != "cuda":
        raise MeterUnavailable("meter.gpu=nvml needs device=cuda")
    nvml, handle, _ = open_nvml(device)
    return [gpu_meter(nvml, handle)], []


def _gpu_auto(device: torch.device, conf: MeterConf) -> Opened:
    return _nvml(device, conf) if device.type == "cuda" else ([], [])


def _rapl(device: torch.device, conf: MeterConf) -> Opened:
    package = RaplMeter("package", Path(conf.powercap_root))
    if not package.is_available():
        raise MeterUnavailable(f"meter.host=rapl: {package.why_unavailable()}")
    dram = RaplMeter("dram", Path(conf.powercap_root))
    return [package] + ([dram] if dram.is_available() else []), []


def _model(device: torch.device, conf: MeterConf) -> Opened:
    return [CpuTimeModelMeter(_core_power(conf.cpu_tdp_w, conf.cpu_cores))], []


def _host_auto(device: torch.device, conf: MeterConf) -> Opened:
    package = RaplMeter("package", Path(conf.powercap_root))
    if package.is_available():
        return _rapl(device, conf)
    meters, _ = _model(device, conf)
    return meters, [f"RAPL unavailable ({package.why_unavailable()}): host energy is modelled"]


def _none(device: torch.device, conf: MeterConf) -> Opened:
    return [], []


CHOICES: dict[str, dict[str, Choice]] = {
    "gpu": {c.name: c for c in (
        Choice("auto", "the GPU's NVML meter on CUDA, nothing elsewhere", _gpu_auto),
        Choice("nvml", "NVML energy counter (power integration where the GPU lacks it)", _nvml, needs_cuda=True),
        Choice("none", "no GPU meter", _none),
    )},
    "host": {c.name: c for c in (
        Choice("auto", "RAPL where readable, else the labelled CPU-time model", _host_auto),
        Choice("rapl", "Linux powercap RAPL: CPU packages and DRAM", _rapl),
        Choice("model", "model: this process's CPU time x per-core power from the CPU's TDP", _model),
        Choice("none", "no host meter", _none),
    )},
}


def select_meters(device: torch.device, conf: MeterConf | None = None) -> MeterSet:
    """Meters for a point on `device`, as `conf` chooses them (defaults: `auto` for both)."""
    conf = conf or MeterConf()
    gpu, gpu_notes = CHOICES["gpu"][conf.gpu].open(device, conf)
    host, host_notes = CHOICES["host"][conf.host].open(device, conf)
    out = MeterSet(gpu + host, gpu_notes + host_notes)
    if device.type == "cuda":
        out.nvml, out.gpu_handle, out.gpu_id = open_nvml(device)
    return out
