"""From an LLM architecture and a device model to the time and energy of one serving step.

A step is one iteration of continuous batching: the prompts admitted in it are prefilled and
every running request decodes one token. Its work is counted from the architecture (linear
layers: 2 flops per weight per token, weights read once per step; attention: 4 x heads x
head_dim flops per query-key pair, the KV cache read once), and its time and energy come from a
device model: time = max(flops / rate, bytes / bandwidth) + overhead, energy = e_flop x flops +
e_byte x bytes + P_0 x time (the energy roofline of `bench.curves`).

Device models come from a measured profile (its time and energy rooflines) or, for hardware no
one here has measured, from a datasheet (`model:datasheet`: peak rate and bandwidth, and the
Splitwise H100 power model, idle 75 W / prefill 700 W / decode 380 W, scaled to the part's TDP
and idle power). A datasheet model runs at peak rates: it is optimistic, and labelled.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.carbon import embodied

# Splitwise's H100 power model: decode draws (380 - 75) / (700 - 75) of prefill's dynamic power.
DECODE_POWER_SHARE = (380.0 - 75.0) / (700.0 - 75.0)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    dtype_bytes: int = 2

    @property
    def linear_params(self) -> int:
        attn = self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2
        return self.layers * (attn + 3 * self.hidden * self.ffn)

    @property
    def weight_bytes(self) -> float:
        return float((self.linear_params + 2 * self.vocab * self.hidden) * self.dtype_bytes)

    @property
    def kv_bytes_per_token(self) -> float:
        return float(2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes)


PRESETS = {
    "llama3_8b": ModelSpec("Llama-3-8B", 32, 4096, 32, 8, 128, 14336, 128256),
    "llama3_70b": ModelSpec("Llama-3-70B", 80, 8192, 64, 8, 128, 28672, 128256),
    "qwen3_8b": ModelSpec("Qwen3-8B", 36, 4096, 32, 8, 128, 12288, 151936),
}


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
    from bench.profiles import _fit_from_dict

    prefill = [_fit_from_dict(f) for k, f in profile.fits.get("time_roofline", {}).items() if k.startswith("prefill")]
    decode = [_fit_from_dict(f) for k, f in profile.fits.get("time_roofline", {}).items() if k.startswith("decode")]
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


@dataclass(frozen=True)
class StepCost:
    """Coefficients of one step's flops and bytes, so the simulation's inner loop is arithmetic."""

    flop_per_token: float  # linear layers, per token processed (prefill or decode)
    flop_per_prefill_pair: float  # attention, per causal query-key pair of a prompt
    flop_per_context_token: float  # decode attention, per cached token read
    bytes_per_step: float  # weights
    bytes_per_context_token: float  # KV cache read in decode
    bytes_per_new_token: float  # KV written
    device: DeviceModel

    @classmethod
    def of(cls, model: ModelSpec, device: DeviceModel) -> "StepCost":
        attn = 4.0 * model.layers * model.heads * model.head_dim
        return cls(2.0 * model.linear_params + 2.0 * model.vocab * model.hidden, attn, attn, model.weight_bytes,
                   model.kv_bytes_per_token, model.kv_bytes_per_token, device)

    def time_energy(self, new_tokens: float, prefill_pairs: float, decode_tokens: float, context_tokens: float
                    ) -> tuple[float, float]:
        d = self.device
        flops = (self.flop_per_token * (new_tokens + decode_tokens) + self.flop_per_prefill_pair * prefill_pairs
                 + self.flop_per_context_token * context_tokens)
        nbytes = (self.bytes_per_step + self.bytes_per_context_token * context_tokens
                  + self.bytes_per_new_token * (new_tokens + decode_tokens))
        t = max(flops / d.flop_per_s, nbytes / d.bytes_per_s) + d.overhead_s
        return t, d.e_flop_j * flops + d.e_byte_j * nbytes + d.p0_w * t
