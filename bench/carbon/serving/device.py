"""Device models: the time and energy of flops and bytes on one serving replica.

From a measured profile (its time and energy rooflines) or, for hardware no one here has
measured, from a datasheet (`model:datasheet`: peak rate and bandwidth, and the Splitwise H100
power model, idle 75 W / prefill 700 W / decode 380 W, scaled to the part's TDP and idle power).
A datasheet model runs at peak rates: it is optimistic, and labelled.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.carbon.inputs import embodied
from bench.carbon.serving.composed import StepParts, parts_from_profile
from bench.profile.fit import Fit

# Splitwise's H100 power model: decode draws (380 - 75) / (700 - 75) of prefill's dynamic power.
DECODE_POWER_SHARE = (380.0 - 75.0) / (700.0 - 75.0)


@dataclass(frozen=True)
class DeviceModel:
    """One serving replica (all its GPUs, or a host's cores)."""

    name: str
    method: str  # `model:datasheet`, or `profile:<name>` (with any scaling said)
    flop_per_s: float
    bytes_per_s: float
    overhead_s: float
    e_flop_j: float
    e_byte_j: float
    p0_w: float  # power while busy beyond the per-flop and per-byte terms (idle + static)
    idle_w: float
    memory_bytes: float
    devices: int = 1  # GPUs in the replica (tensor parallel)
    parts: StepParts | None = None  # a step composed from measured parts (`from_parts`); None: the roofline above


def datasheet(gpu: str, tp: int = 1) -> DeviceModel:
    row = embodied.gpus().loc[gpu]
    rate, bw = float(row.peak_bf16_tflop_per_s) * 1e12 * tp, float(row.memory_gb_per_s) * 1e9 * tp
    dyn_w = (float(row.tdp_w) - float(row.idle_w)) * tp
    return DeviceModel(
        name=gpu, method="model:datasheet", flop_per_s=rate, bytes_per_s=bw, overhead_s=0.0,
        e_flop_j=dyn_w / rate, e_byte_j=DECODE_POWER_SHARE * dyn_w / bw, p0_w=float(row.idle_w) * tp,
        idle_w=float(row.idle_w) * tp, memory_bytes=float(row.memory_gb) * 1e9 * tp, devices=tp)


def from_profile(profile, name: str, memory_bytes: float, scale: float = 1.0, idle_w: float = 0.0) -> DeviceModel:
    """A device model from a measured profile's rooflines; `scale` multiplies rates and power
    (e.g. a host with more cores than the profiled one, said in the method)."""
    # Attention cases only: a profile may also hold linear-layer and whole-layer cases (`from_parts`).
    rooflines = {k: f for k, f in profile.fits.get("time_roofline", {}).items() if profile.op_of(k) == "attention"}
    prefill = [Fit.from_dict(f) for k, f in rooflines.items() if profile.phase_of(k) == "prefill"]
    decode = [Fit.from_dict(f) for k, f in rooflines.items() if profile.phase_of(k) == "decode"]
    roof = profile.energy_roofline()
    if not prefill or not decode or roof is None:
        raise ValueError(f"profile {profile.name} lacks a prefill or decode time roofline or an energy roofline")
    rate = max(f.extra["flop_per_s"] for f in prefill)
    bw = max(f.extra["bytes_per_s"] for f in decode)
    overhead = min(f.params["overhead_s"] for f in prefill + decode)
    method = f"profile:{profile.name}" + (f" x {scale:g} (scaled, model)" if scale != 1.0 else "")
    p = roof.params
    return DeviceModel(name=name, method=method, flop_per_s=rate * scale, bytes_per_s=bw * scale, overhead_s=overhead,
                       e_flop_j=max(p["e_flop_j"], 0.0), e_byte_j=max(p["e_byte_j"], 0.0), p0_w=p["p0_w"] * scale,
                       idle_w=idle_w, memory_bytes=memory_bytes)


def from_parts(profile, name: str, memory_bytes: float, scale: float = 1.0, idle_w: float = 0.0) -> DeviceModel:
    """`from_profile`'s model, with each step composed from the profile's measured parts (linear
    rooflines per projection, attention rooflines, layer overheads; `composed.StepParts`), which
    `StepCost` then uses instead of the single roofline. Raises `ValueError` naming a missing fit."""
    base = from_profile(profile, name, memory_bytes, scale, idle_w)
    parts = parts_from_profile(profile)
    if scale != 1.0:
        parts = parts.scaled(scale, "scaled, model")
    terms = "; ".join(f"{term}: {source}" for term, source in parts.sources().items())
    return dataclasses.replace(base, method=f"{base.method}, step composed from measured parts ({terms})", parts=parts)
