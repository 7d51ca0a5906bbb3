"""The environment a point was measured in: device, driver, library versions, CPU."""
from __future__ import annotations

import functools
import os
import platform
import socket
from typing import Any

import torch

from bench.measure.meters.cpu_time_model import cpu_model_name


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "absent"
    return triton.__version__


@functools.cache
def _driver_version() -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        return str(pynvml.nvmlSystemGetDriverVersion())
    except Exception as err:  # no driver, no library: recorded rather than fatal
        return f"unavailable ({type(err).__name__})"


DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    """`auto`: the GPU where one is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: bfloat16 on a GPU, float32 on a CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model_name()


def software(device: torch.device) -> dict[str, str]:
    """The versions that run a kernel on `device`: part of a point's identity."""
    versions = {"torch": torch.__version__, "triton": _triton_version()}
    if device.type == "cuda":
        versions.update(cuda=str(torch.version.cuda), driver=_driver_version())
    return versions


def describe(device: torch.device) -> dict[str, Any]:
    """Columns `env_*` of a result row."""
    env: dict[str, Any] = {
        "env_device_name": device_name(device),
        "env_cpu_model": cpu_model_name(),
        "env_cpu_logical_cores": os.cpu_count(),
        "env_torch_threads": torch.get_num_threads(),
        "env_torch_version": torch.__version__,
        "env_triton_version": _triton_version(),
        "env_python_version": platform.python_version(),
        "env_os": platform.platform(),
        "env_hostname": socket.gethostname(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            env_driver_version=_driver_version(),
            env_cuda_version=torch.version.cuda,
            env_gpu_sm_count=props.multi_processor_count,
            env_gpu_memory_gib=round(props.total_memory / 2**30, 1),
        )
    return env
