"""Energy meters, one per file, and the choice of which ones measure a point."""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.meters.base import Meter, MeterUnavailable, Reading
from bench.meters.model import CpuTimeModelMeter, core_power, cpu_model_name, os_cores_per_socket, tdp_table
from bench.meters.nvml import gpu_meter, open_gpu
from bench.meters.rapl import RaplMeter

__all__ = ["Meter", "MeterUnavailable", "Reading", "MeterSet", "select_meters"]

log = logging.getLogger(__name__)

GPU_CHOICES = ("auto", "nvml", "none")
HOST_CHOICES = ("auto", "rapl", "model", "none")


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


def _gpu(choice: str, device: torch.device) -> list[Meter]:
    if choice == "none" or device.type != "cuda":
        if choice == "nvml":
            raise MeterUnavailable("meter.gpu=nvml needs device=cuda")
        return []
    nvml, handle, _ = open_nvml(device)
    return [gpu_meter(nvml, handle)]


def _host(choice: str, powercap_root: Path, cpu_tdp_w: float | None, cpu_cores: int | None) -> tuple[list[Meter], list[str]]:
    notes: list[str] = []
    if choice in ("auto", "rapl"):
        package = RaplMeter("package", powercap_root)
        if package.is_available():
            dram = RaplMeter("dram", powercap_root)
            return [package] + ([dram] if dram.is_available() else []), notes
        if choice == "rapl":
            raise MeterUnavailable(f"meter.host=rapl: {package.why_unavailable()}")
        notes.append(f"RAPL unavailable ({package.why_unavailable()}): host energy is modelled")
    if choice in ("auto", "model"):
        power = _core_power(cpu_tdp_w, cpu_cores)
        return [CpuTimeModelMeter(power)], notes
    return [], notes


@functools.cache
def _core_power(cpu_tdp_w: float | None, cpu_cores: int | None):
    name = cpu_model_name()
    return core_power(name, tdp_table(), cpu_tdp_w, cpu_cores or os_cores_per_socket())


def select_meters(
    device: torch.device,
    gpu: str = "auto",
    host: str = "auto",
    powercap_root: Path | str = Path("/sys/class/powercap"),
    cpu_tdp_w: float | None = None,
    cpu_cores: int | None = None,
) -> MeterSet:
    """Meters for a point on `device`: the GPU's NVML meter on CUDA, and host energy by RAPL where
    readable, else the labelled CPU-time model (`auto`)."""
    meters = _gpu(gpu, device)
    host_meters, notes = _host(host, Path(powercap_root), cpu_tdp_w, cpu_cores)
    out = MeterSet(meters + host_meters, notes)
    if device.type == "cuda":
        out.nvml, out.gpu_handle, out.gpu_id = open_nvml(device)
    return out
