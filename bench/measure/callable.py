"""`bench.measure_callable`: any callable measured by the same protocol, meters, windows and
quality flag as a built-in case (FlashInfer, your own Triton kernel, a whole model step).

    import bench
    point = bench.measure_callable(lambda: my_kernel(q, k, v), tokens=batch, flops=4 * b * h * d * n)
    point.time_per_call_s, point.domains["gpu"].energy_per_call_j, point.domains["gpu"].method, point.quality
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.measure.clocks import ClockRequest
from bench.measure.lock import LockConf
from bench.measure.meters import MeterConf
from bench.measure.protocol import Protocol, protocol_problem
from bench.measure.row import energy_columns, telemetry_columns
from bench.measure.session import Setup, measure_on_device


@dataclass(frozen=True)
class DomainEnergy:
    """One energy domain of a measured callable; `method` says how (a `model:` method is an estimate)."""

    domain: str
    method: str
    energy_per_call_j: float
    energy_per_call_j_cv: float
    energy_per_token_j: float
    dynamic_energy_per_call_j: float
    idle_power_w: float


@dataclass(frozen=True)
class CallablePoint:
    """A measured callable: medians over the kept trials, their spread, and the quality flag."""

    time_per_call_s: float
    time_per_call_s_cv: float
    tokens_per_call: float
    domains: dict[str, DomainEnergy]
    quality: str
    flop_per_s: float = math.nan
    bytes_per_s: float = math.nan
    columns: dict[str, Any] = field(default_factory=dict)  # the energy and telemetry columns a stored point has


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"measure_callable: device={device!r}: choose auto, cpu or cuda[:index]")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"measure_callable: device={device!r}, but no CUDA GPU is visible here")
    return torch.device(device)


def protocol_from(overrides: dict[str, Any]) -> Protocol:
    known = {f.name for f in dataclasses.fields(Protocol)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"measure_callable: unknown protocol setting(s) {unknown}; known: {sorted(known)}")
    protocol = Protocol(**overrides)
    problem = protocol_problem(protocol)  # the CLI's own checks of measure.*
    if problem:
        name, value, why = problem
        raise ValueError(f"measure_callable: {name}={value!r} {why}")
    return protocol


def measure_callable(fn: Callable[[], object], *, tokens: float = 1, flops: float | None = None,
                     bytes: float | None = None, device: str | torch.device = "auto",  # noqa: A002 (the issue's name)
                     meter: MeterConf | None = None, lock: LockConf | None = None,
                     cuda_graph: bool = False, **protocol_overrides: Any) -> CallablePoint:
    """Measure `fn` (no arguments, inputs already allocated) by the harness's protocol.

    Args:
        fn: the work of one call; it must leave the device idle-able (the protocol synchronises).
        tokens: tokens one call processes (energy per token = energy per call / tokens).
        flops, bytes: work of one call, for the achieved rate and bandwidth (optional).
        device: `auto` (CUDA if visible), `cpu`, `cuda` or `cuda:<index>`: where `fn` runs,
            which meters apply and what is synchronised.
        meter: which meters (default: `auto` for GPU and host, as `python -m bench`).
        lock: the per-device lock (default: the CLI's `lock.dir`, so a sweep and this never
            measure one device at once).
        cuda_graph: `fn` does no host work, so on a GPU short calls may be replayed from a CUDA
            graph (launch overhead is then not what gets measured).
        protocol_overrides: any `measure.*` setting (`trials=5`, `min_window_s=1.0`, ...).

    Returns:
        A `CallablePoint`: time per call, each energy domain with its method and CV, quality.
    """
    if not tokens > 0:
        raise ValueError(f"measure_callable: tokens={tokens!r} must be > 0")
    setup = Setup(device=_resolve_device(device), protocol=protocol_from(protocol_overrides),
                  meter=meter or MeterConf(), clocks=ClockRequest(), lock=lock or LockConf())
    measured = measure_on_device(lambda: fn, setup, graph_capturable=cuda_graph)
    result = measured.result
    columns = {**energy_columns(result, tokens), **telemetry_columns(result)}
    domains = {d.domain: DomainEnergy(d.domain, d.method, d.energy_per_call_j, d.energy_per_call_j_cv,
                                      d.energy_per_call_j / tokens, d.dynamic_energy_per_call_j, d.idle_power_w)
               for d in result.domains}
    t = result.time_per_call_s
    return CallablePoint(t, result.time_per_call_s_cv, float(tokens), domains, result.quality,
                         flop_per_s=flops / t if flops is not None else math.nan,
                         bytes_per_s=bytes / t if bytes is not None else math.nan, columns=columns)
