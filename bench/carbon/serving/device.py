"""Device models: the time and energy of flops and bytes on one serving replica.

From a measured profile (its time and energy rooflines) or, for hardware no one here has
measured, from a datasheet. `datasheet()` gives the calibrated datasheet model: the datasheet's
peak rate and bandwidth times the achievable fractions this project measured (`data/ceilings.csv`),
the board's TDP as a power cap, and seven physical parameters (per-step overhead, the share of
peak bandwidth attention's KV-cache reads achieve, static power while busy, energy per flop and per
HBM byte, and the time and energy of each sampled position's per-request work) calibrated against measured servers (`data/calibration_<gpu>_<source>.json`, made by
`bench.carbon.validation.calibrate`), labelled `model:datasheet+calibrated:<source>`. A GPU
without its own calibration takes the reference GPU's (`transfer`): the same KV-bandwidth share
and overheads, its own measured ceilings where the project has them (else the reference's), static
power, per-sequence energy and per-flop / per-byte energies scaled so power at full rate scales with TDP; said in the
label. `datasheet(..., calibrated=False)` is the old optimistic model (`model:datasheet`: peak
rates, no overhead, the Splitwise H100 power model, idle 75 W / prefill 700 W / decode 380 W,
scaled to the part's TDP and idle power).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.carbon.inputs import embodied
from bench.carbon.serving.composed import StepParts, parts_from_profile
from bench.profile import store
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
    # Attention's KV-cache read bandwidth: when set, a step times its linear layers and attention apart
    # (`step.split_step_s`); 0 keeps one roofline over all of a step's flops and bytes.
    kv_bytes_per_s: float = 0.0
    power_cap_w: float = math.inf  # board power limit of the replica; a step that would draw more runs slower
    e_kv_byte_j: float = 0.0  # energy per KV-cache byte read, where it differs from e_byte_j (0: the same)
    # Work per sampled position (each decode token, each prompt's last position) beyond its flops and bytes:
    # vLLM's per-request work in a step (sampling over the vocabulary, logits processing, the request's
    # inputs and metadata, attention's per-sequence setup); time added to the step, energy beside the
    # dynamic terms. 0 in models without it (the plain datasheet, measured profiles).
    seq_s: float = 0.0
    e_seq_j: float = 0.0
    # Tensor parallelism's all-reduce (`allreduce_s`): message sizes (bytes) and times (s) measured on this
    # GPU type at this TP degree, and the bytes per second a message beyond the largest one adds; (): none.
    allreduce: tuple = ()


ALLREDUCE = embodied.DATA / "allreduce.csv"
TP_LINKS = embodied.DATA / "tp_links.csv"
# GPU types whose tensor-parallel links are the same as a measured one's (H200 SXM: H100's NVLink 4).
ALLREDUCE_SAME_AS = {"h200_sxm": "h100_sxm"}
# The GPU type whose measured all-reduce gives the ring model of the others its efficiency and latency.
ALLREDUCE_REFERENCE = "h100_sxm"


@functools.cache
def measured_allreduce(gpu: str) -> pd.DataFrame:
    """The rows of `data/allreduce.csv` measured on `gpu` (or the type whose links it shares), by degree and size."""
    a = pd.read_csv(ALLREDUCE)
    return a[a["gpu"] == ALLREDUCE_SAME_AS.get(gpu, gpu)].sort_values(["tp", "message_bytes"])


@functools.cache
def tp_links() -> pd.DataFrame:
    """Each GPU type's tensor-parallel link and its datasheet bandwidth per direction (`data/tp_links.csv`)."""
    return pd.read_csv(TP_LINKS).set_index("gpu")


@functools.cache
def ring_model(gpu: str, tp: int) -> tuple[tuple, str] | None:
    """(`DeviceModel.allreduce`, what it is) of `tp` GPUs of a type with no measured table, from its
    link (`data/tp_links.csv`) and the reference GPU's measurement:
    - at a degree the reference was measured at: the reference's curve up to its largest size, its
      time above its floor (its fastest call, launch overhead included) scaled by the ratio of the
      two links' bandwidths. The curve is first made non-decreasing (each size takes the fastest
      time at or above it), since at small sizes the rise above the floor is launch jitter, not bytes;
    - at another degree: one knot at the smallest size, at the floor of the nearest measured degree;
    - beyond: the link's datasheet bandwidth at the share of its own link that the reference's
      measured NCCL bus bandwidth reaches.
    NCCL over PCIe has a higher latency, and PCIe all-reduces beyond two GPUs cross the host's root
    complex, so on PCIe it is optimistic. None where the type has no link, or where the replica has
    more GPUs than a node holds (`gpus.csv` `gpus_per_node`: a network all-reduce, not modelled)."""
    links, ref = tp_links(), measured_allreduce(ALLREDUCE_REFERENCE)
    if gpu not in links.index or ALLREDUCE_REFERENCE not in links.index or ref.empty:
        return None
    if tp > int(embodied.gpus().loc[gpu, "gpus_per_node"]):
        return None
    ref_link = float(links.loc[ALLREDUCE_REFERENCE, "gb_per_s_per_direction"])
    link = float(links.loc[gpu, "gb_per_s_per_direction"])
    efficiency = float(ref["tail_bus_gb_per_s"].iloc[-1]) / ref_link
    ring = 2.0 * (tp - 1) / tp  # bytes each GPU sends per byte reduced
    tail_bytes_per_s = link * efficiency * 1e9 / ring
    near = int(min(ref["tp"].unique(), key=lambda d: (abs(int(d) - tp), -int(d))))
    at = ref[ref["tp"] == near]
    floor_s = float(at["time_us"].min()) * 1e-6
    if near == tp:
        rising = np.minimum.accumulate(at["time_us"].to_numpy(float)[::-1])[::-1] * 1e-6
        table = (tuple(at["message_bytes"].astype(float)),
                 tuple(float(t) for t in floor_s + (rising - floor_s) * ref_link / link), tail_bytes_per_s)
        shape = (f"{ALLREDUCE_REFERENCE}'s measured curve at {tp} GPUs to {float(at['message_bytes'].max()) / 2**20:g} "
                 f"MiB, its time above its {floor_s * 1e6:.1f} us floor scaled by {ref_link:g}/{link:g}")
    else:
        table = ((float(ref["message_bytes"].min()),), (floor_s,), tail_bytes_per_s)
        shape = f"{floor_s * 1e6:.1f} us per call ({ALLREDUCE_REFERENCE}'s floor at {near} GPUs)"
    what = (f"model on {links.loc[gpu, 'link']}: {shape}; beyond, {link * efficiency:.0f} GB/s bus bandwidth (the "
            f"datasheet {link:g} GB/s per direction x {efficiency:.2f}, the share {ALLREDUCE_REFERENCE}'s measured "
            f"NCCL reaches; data/tp_links.csv)" + ("; optimistic over PCIe" if "pcie" in str(links.loc[gpu, "link"]).lower()
                                                  else ""))
    return table, what


@functools.cache
def allreduce_table(gpu: str, tp: int) -> tuple:
    """`DeviceModel.allreduce` of `tp` GPUs of a type: from `data/allreduce.csv` (a public measurement
    of vLLM's all-reduce for messages up to 4 MiB; beyond, NCCL's ring at its bus bandwidth moves
    2(tp-1)/tp of each further byte per GPU) where it was measured at this degree, else `ring_model`;
    () where neither applies: then a step of a tensor-parallel replica has no communication term,
    and its method says so."""
    if tp <= 1:
        return ()
    a = measured_allreduce(gpu)
    a = a[a["tp"] == tp]
    if not a.empty:
        tail_bytes_per_s = float(a["tail_bus_gb_per_s"].iloc[-1]) * 1e9 / (2.0 * (tp - 1) / tp)
        return (tuple(a["message_bytes"].astype(float)), tuple(a["time_us"].astype(float) * 1e-6), tail_bytes_per_s)
    model = ring_model(gpu, tp)
    return model[0] if model is not None else ()


def allreduce_method(gpu: str, tp: int) -> str:
    """What a tensor-parallel replica's method says of its all-reduce ('' for one GPU)."""
    if tp <= 1:
        return ""
    if not measured_allreduce(gpu)[lambda a: a["tp"] == tp].empty:
        return (f"; TP all-reduce: model at static power from a table of {ALLREDUCE_SAME_AS.get(gpu, gpu)} to 4 MiB, "
                "NCCL's 370 GB/s bus bandwidth beyond (data/allreduce.csv)")
    model = ring_model(gpu, tp)
    if model is not None:
        return f"; TP all-reduce: at static power, {model[1]}"
    if gpu in tp_links().index and tp > int(embodied.gpus().loc[gpu, "gpus_per_node"]):
        return f"; TP all-reduce not modelled ({tp} GPUs span more than one node: no network model)"
    return f"; TP all-reduce not modelled (no table or link for {gpu} at {tp} GPUs)"


def allreduce_s(device: DeviceModel, message_bytes):
    """Seconds of one all-reduce of `message_bytes` (a float or an array) on `device`: the measured
    times interpolated, plus the tail bandwidth beyond the largest measured size; 0 without a table."""
    if not device.allreduce:
        return 0.0
    sizes, times, tail_bytes_per_s = device.allreduce
    t = np.interp(message_bytes, sizes, times) + np.maximum(np.subtract(message_bytes, sizes[-1]), 0.0) / tail_bytes_per_s
    return float(t) if np.ndim(t) == 0 else t


REFERENCE_GPU = "h100_sxm"  # the GPU whose calibration others take by transfer
# What a calibration fits: per-step overhead, attention's share of peak bandwidth, static power while busy,
# energy per flop and per byte (a weight streamed or a KV-cache byte read: one HBM byte), and the time and
# energy of each sampled position's per-request work (`DeviceModel.seq_s`, `e_seq_j`).
PHYSICAL = ("overhead_s", "kv_bw_fraction", "p_static_w", "e_flop_pj", "e_byte_pj", "seq_s", "e_seq_mj")


MIB = 2.0 ** 20


def memory_bytes(gpu: str) -> float:
    """The memory of one GPU of a type as the driver reports it (`gpus.csv` `memory_visible_mib`,
    nvidia-smi's total): what vLLM's `gpu_memory_utilization` takes its share of (CUDA reports an H100
    0.43 GiB less, counted in the validation's runtime reserve). The marketed "80 GB" of an H100 is neither
    80e9 bytes (6.5% short of the 81,559 MiB reported) nor 80 GiB (0.4% over); an L4's "24 GB" is
    23,034 MiB. One figure for every consumer: the validation's replay and the planner's candidates."""
    return float(embodied.gpus().loc[gpu, "memory_visible_mib"]) * MIB


@functools.cache
def ceilings() -> pd.DataFrame:
    """Achievable fractions of datasheet peak measured by this project, per GPU type, with sources."""
    return pd.read_csv(embodied.DATA / "ceilings.csv").set_index("gpu")


@functools.cache
def calibration(gpu: str) -> dict | None:
    """The committed calibration of a GPU type (`data/calibration_<gpu>_<source>.json`), or None."""
    found = sorted(embodied.DATA.glob(f"calibration_{gpu}_*.json"))
    return json.loads(found[-1].read_text()) if found else None


def fractions(gpu: str) -> tuple[float, float, str] | None:
    """(flop, bandwidth) fractions of peak measured on this GPU type and their source, or None."""
    table = ceilings()
    if gpu not in table.index:
        return None
    row = table.loc[gpu]
    return float(row.flop_fraction), float(row.bw_fraction), str(row.source)


def physical(gpu: str, params: dict, flop_fraction: float, bw_fraction: float, method: str, tp: int = 1
             ) -> DeviceModel:
    """A device model from a datasheet row, achievable fractions and the physical parameters (`PHYSICAL`)."""
    row = embodied.gpus().loc[gpu]
    peak, bw = float(row.peak_bf16_tflop_per_s) * 1e12, float(row.memory_gb_per_s) * 1e9
    if not params["p_static_w"] < float(row.tdp_w):
        raise ValueError(f"{gpu}: static power {params['p_static_w']} W must be below the TDP {row.tdp_w} W")
    comm = allreduce_table(gpu, tp)
    method += allreduce_method(gpu, tp)
    return DeviceModel(
        name=gpu, method=method, flop_per_s=peak * flop_fraction * tp, bytes_per_s=bw * bw_fraction * tp,
        overhead_s=params["overhead_s"], e_flop_j=params["e_flop_pj"] * 1e-12, e_byte_j=params["e_byte_pj"] * 1e-12,
        p0_w=params["p_static_w"] * tp, idle_w=float(row.idle_w) * tp, memory_bytes=memory_bytes(gpu) * tp,
        devices=tp, kv_bytes_per_s=bw * params["kv_bw_fraction"] * tp, power_cap_w=float(row.tdp_w) * tp,
        # A KV byte costs a streamed byte's energy (0: the same); a calibration made before that keeps its
        # own KV energy and has no per-sequence terms.
        e_kv_byte_j=params["e_kv_byte_pj"] * 1e-12 if "e_kv_byte_pj" in params else 0.0, allreduce=comm,
        # Per request, per replica: not multiplied by a tensor-parallel replica's GPUs (fitted on one GPU, it
        # is not known how the work splits over them; counted on each GPU, it overpredicted ML.ENERGY's 4-GPU
        # Llama-3.1-70B by up to 19% in energy and, through the power cap, 45% in ITL; per replica its 2-GPU
        # servers read up to 18% low: README).
        seq_s=params.get("seq_s", 0.0), e_seq_j=params.get("e_seq_mj", 0.0) * 1e-3)


def transfer(params: dict, source_gpu: str, gpu: str) -> dict:
    """A calibration carried to another GPU type: overhead, per-sequence time and KV-bandwidth share kept;
    static power and per-sequence energy scaled by TDP, energy per flop and per byte so that power at
    full rate scales by TDP too."""
    src, dst = embodied.gpus().loc[source_gpu], embodied.gpus().loc[gpu]
    tdp = float(dst.tdp_w) / float(src.tdp_w)
    per_seq = {"e_seq_mj": params["e_seq_mj"] * tdp} if "e_seq_mj" in params else {}
    kv = ({"e_kv_byte_pj": params["e_kv_byte_pj"] * tdp * float(src.memory_gb_per_s) / float(dst.memory_gb_per_s)}
          if "e_kv_byte_pj" in params else {})
    return {**params, **per_seq, **kv, "p_static_w": params["p_static_w"] * tdp,
            "e_flop_pj": (params["e_flop_pj"] * tdp * float(src.peak_bf16_tflop_per_s)
                          / float(dst.peak_bf16_tflop_per_s)),
            "e_byte_pj": params["e_byte_pj"] * tdp * float(src.memory_gb_per_s) / float(dst.memory_gb_per_s)}


def measured_profiles(gpus: list[str], root: str) -> dict:
    """GPU type -> its measured profile in `root`, for the types that have one (the newest whose device
    name contains the type's `gpus.csv` `name_match`): the planner takes it in place of the datasheet
    model. A profile file there that cannot be read is a ProfileError naming it."""
    out = {}
    for gpu in gpus:
        found = store.for_device(str(embodied.gpus().loc[gpu, "name_match"]), root)
        if found is not None:
            out[gpu] = found
    return out


def datasheet(gpu: str, tp: int = 1, calibrated: bool = True) -> DeviceModel:
    """The calibrated datasheet model of `tp` GPUs of a type (module docstring); without a calibration
    anywhere, or with `calibrated=False`, the peak-rate `model:datasheet`."""
    own, ref = calibration(gpu), calibration(REFERENCE_GPU)
    if calibrated and (own or ref):
        cal = own or ref
        fixed = cal["fixed"]
        if own:
            return physical(gpu, cal["params"], fixed["flop_fraction"], fixed["bw_fraction"],
                            f"model:datasheet+calibrated:{cal['source']}", tp)
        measured = fractions(gpu)
        flop_fraction, bw_fraction = measured[:2] if measured else (fixed["flop_fraction"], fixed["bw_fraction"])
        per_seq = "seq_s" in cal["params"]  # (a calibration made before the per-sequence terms has none)
        whose = "this GPU's" if measured else "its"
        method = (f"model:datasheet+calibrated:{cal['source']} (transfer from {REFERENCE_GPU}: its KV-bandwidth share "
                  f"and per-step{' and per-sequence' if per_seq else ''} times, {whose} "
                  f"measured achievable fractions, static power{', per-sequence' if per_seq else ''} and per-op "
                  "energies scaled by TDP)")
        return physical(gpu, transfer(cal["params"], REFERENCE_GPU, gpu), flop_fraction, bw_fraction, method, tp)
    row = embodied.gpus().loc[gpu]
    rate, bw = float(row.peak_bf16_tflop_per_s) * 1e12 * tp, float(row.memory_gb_per_s) * 1e9 * tp
    dyn_w = (float(row.tdp_w) - float(row.idle_w)) * tp
    return DeviceModel(
        name=gpu, method="model:datasheet" + allreduce_method(gpu, tp), flop_per_s=rate, bytes_per_s=bw, overhead_s=0.0,
        e_flop_j=dyn_w / rate, e_byte_j=DECODE_POWER_SHARE * dyn_w / bw, p0_w=float(row.idle_w) * tp,
        idle_w=float(row.idle_w) * tp, memory_bytes=memory_bytes(gpu) * tp, devices=tp,
        allreduce=allreduce_table(gpu, tp))


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
