"""A serving step composed from measured parts: each decoder layer's linear projections from the
linear-layer profile's own rooflines, its attention from the attention cases' rooflines, and a
per-layer overhead (what the parts leave out) calibrated on measured decoder layers; the parts
run one after another, so a step's time is their sum, and its energy the sum of their energies.

`StepParts` is the device's side (a roofline per part, said where each comes from);
`ComposedStep` fixes a model's widths on it, so the simulation's inner loop stays arithmetic.
The LM head is one more linear layer no case measures: it takes the `gate_up` roofline (the
widest measured projection), and says so; it runs once per step, over the positions whose logits
are sampled (each decode token and the last token of each prompt prefilled). A model built from a profile of a different device or
width extrapolates the rooflines: their inputs are flops and bytes, not widths.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench.carbon.serving.models import ModelSpec
from bench.profile.fit import Fit

PROJECTIONS = ("qkv", "o", "gate_up", "down")
LM_HEAD_ROOFLINE = "gate_up"


@dataclass(frozen=True)
class PartModel:
    """One part: t = max(flops / rate, bytes / bandwidth) + overhead, E = e_flop x flops +
    e_byte x bytes + P_0 x t; `source` names the fits (`profile:<name> <fit>[<group>]`)."""

    source: str
    flop_per_s: float
    bytes_per_s: float
    overhead_s: float
    e_flop_j: float
    e_byte_j: float
    p0_w: float

    def time_energy(self, flops: float, nbytes: float) -> tuple[float, float]:
        t = max(flops / self.flop_per_s, nbytes / self.bytes_per_s) + self.overhead_s
        return t, self.e_flop_j * flops + self.e_byte_j * nbytes + self.p0_w * t


@dataclass(frozen=True)
class LayerOverhead:
    """Per layer and step of one phase: t = c0_s + c_elem_s x tokens x hidden + c_kv_s x
    kv_elements, E likewise (`bench.profile.overhead`: kv_elements are the KV-cache elements the
    step's attention reads, K and V of every decode request's context; a fit without that term,
    or a profile written before it, has c_kv_s = e_kv_j = 0)."""

    source: str
    c0_s: float
    c_elem_s: float
    e0_j: float
    e_elem_j: float
    c_kv_s: float = 0.0
    e_kv_j: float = 0.0

    def time_energy(self, elements: float, kv_elements: float = 0.0) -> tuple[float, float]:
        # The fit's intercepts are free and can come out below zero (the committed CPU fits do): an
        # overhead never gives time or energy back, so it is clamped at zero, as the check does.
        return (max(0.0, self.c0_s + self.c_elem_s * elements + self.c_kv_s * kv_elements),
                max(0.0, self.e0_j + self.e_elem_j * elements + self.e_kv_j * kv_elements))


@dataclass(frozen=True)
class StepParts:
    """The parts of a decoder layer on one device (model-independent: flops and bytes in)."""

    linear: dict[str, PartModel]  # by projection: qkv, o, gate_up, down
    prefill_attention: PartModel
    decode_attention: PartModel
    prefill_overhead: LayerOverhead
    decode_overhead: LayerOverhead
    extra: dict[str, Any] = field(default_factory=dict)

    def scaled(self, scale: float, note: str) -> StepParts:
        """Rates and power x `scale` (more cores or GPUs than profiled), overheads unchanged."""
        def part(p: PartModel) -> PartModel:
            return replace(p, source=f"{p.source} x {scale:g} ({note})", flop_per_s=p.flop_per_s * scale,
                           bytes_per_s=p.bytes_per_s * scale, p0_w=p.p0_w * scale)
        return replace(self, linear={k: part(v) for k, v in self.linear.items()},
                       prefill_attention=part(self.prefill_attention), decode_attention=part(self.decode_attention))

    def sources(self) -> dict[str, str]:
        """Each term of the composed step and where it comes from."""
        out = {f"linear {p}": m.source for p, m in self.linear.items()}
        out["LM head"] = f"{self.linear[LM_HEAD_ROOFLINE].source} (applied to the LM head: not measured; model)"
        out.update({"prefill attention": self.prefill_attention.source, "decode attention": self.decode_attention.source,
                    "prefill overhead": self.prefill_overhead.source, "decode overhead": self.decode_overhead.source})
        return out


def _params(fit_dict: Any, what: str) -> dict[str, float]:
    fit = Fit.from_dict(fit_dict)
    if fit is None:
        raise ValueError(f"the profile has no {what}; measure it (conf/sweep/composition_cpu.yaml) and fit")
    return fit.params


def _part(profile: Any, time_kind: str, energy_kind: str, key: str) -> PartModel:
    fits = profile.fits
    t = _params(fits.get(time_kind, {}).get(key), f"{time_kind} for {key}")
    e = _params(fits.get(energy_kind, {}).get(key), f"{energy_kind} for {key}")
    return PartModel(f"profile:{profile.name} {time_kind}[{key}] + {energy_kind}[{key}]",
                     10 ** t["log10_flop_per_s"], 10 ** t["log10_bytes_per_s"], t["overhead_s"], e["e_flop_j"],
                     e["e_byte_j"], e["p0_w"])


def _layer_case(profile: Any, phase: str) -> str:
    """The measured layer case of a phase with overhead fits (decode: paged first, as a server pages)."""
    fitted = profile.fits.get("layer_overhead", {})
    prefer = {"prefill": ("layer.prefill",), "decode": ("layer.decode_paged", "layer.decode")}[phase]
    for name in prefer:
        if "time" in fitted.get(name, {}) and "energy" in fitted.get(name, {}):
            return name
    raise ValueError(f"the profile {profile.name} has no {phase} layer overhead fit ({' or '.join(prefer)}); "
                     "measure the layer cases (conf/sweep/composition_cpu.yaml) and fit")


def _overhead(profile: Any, layer: str) -> LayerOverhead:
    fits = profile.fits["layer_overhead"][layer]
    t, e = _params(fits["time"], f"time overhead of {layer}"), _params(fits["energy"], f"energy overhead of {layer}")
    try:
        return LayerOverhead(f"calibrated:{layer} residuals of profile:{profile.name}", t["c0_s"], t["c_elem_s"],
                             e["e0_j"], e["e_elem_j"], t.get("c_kv_s", 0.0), e.get("e_kv_j", 0.0))
    except KeyError as err:
        raise ValueError(f"the layer overhead of {layer} in profile {profile.name} lacks {err}: "
                         "refit it (task=fit) with this version") from None


def parts_from_profile(profile: Any) -> StepParts:
    """The parts of a profile with linear rooflines, attention rooflines and layer overheads;
    the attention parts are those the calibrated layer cases run (so the overhead fits them)."""
    from kernels import REGISTRY, Shape

    linear = {p: _part(profile, "linear_time_roofline", "linear_energy", f"linear.{p}") for p in PROJECTIONS}
    layers = {phase: _layer_case(profile, phase) for phase in ("prefill", "decode")}
    attention = {phase: next(n for n, _ in REGISTRY.get(layer).parts(Shape(1, 1, 1, 1))
                             if REGISTRY.get(n).op == "attention") for phase, layer in layers.items()}
    return StepParts(linear, _part(profile, "time_roofline", "energy_per_case", attention["prefill"]),
                     _part(profile, "time_roofline", "energy_per_case", attention["decode"]),
                     _overhead(profile, layers["prefill"]), _overhead(profile, layers["decode"]),
                     {"layers": layers, "attention": attention})


@dataclass(frozen=True)
class ComposedStep:
    """A model's widths on a device's parts: one step's time and energy, summed over its parts."""

    parts: StepParts
    layers: int
    hidden: int
    linear: tuple[tuple[PartModel, float, float, float, int], ...]  # (part, flops/token, weight bytes, bytes/token, calls)
    head: tuple[PartModel, float, float, float]  # the LM head: (part, flops/sampled position, weight bytes, bytes/position)
    attn_flop: float  # per query-key pair (prefill) or cached token read (decode), one layer
    prefill_bytes_per_token: float  # q, k, v, o of one prompt token, one layer
    decode_bytes_per_context_token: float
    decode_bytes_per_token: float
    kv_elements_per_context_token: float  # K and V of one cached token, one layer: what the decode overhead's c_kv counts

    @classmethod
    def of(cls, model: ModelSpec, parts: StepParts, kv_copies: float = 1.0) -> ComposedStep:
        """`kv_copies`: GPUs each KV head is held and read on (a replica of more GPUs than heads)."""
        e = model.dtype_bytes
        widths = model.layer.projections()
        linear = [(parts.linear[p], 2.0 * n_in * n_out, float(e * n_in * n_out), float(e * (n_in + n_out)), model.layers)
                  for p, (n_in, n_out) in widths.items()]
        # The LM head: once per step, over the sampled positions only (as `StepCost` counts its flops).
        head = (parts.linear[LM_HEAD_ROOFLINE], model.lm_head_flop_per_token, float(e * model.embedding_params),
                float(e * (model.hidden + model.vocab)))
        hq, hkv, d = model.heads, model.kv_heads, model.head_dim
        return cls(parts, model.layers, model.hidden, tuple(linear), head, 4.0 * hq * d,
                   float(e * d * (2 * hq + 2 * hkv)), float(2 * hkv * d * e * kv_copies), float(2 * hq * d * e + 4),
                   float(2 * hkv * d * kv_copies))

    def time_energy(self, new_tokens: float, prefill_pairs: float, decode_tokens: float, context_tokens: float,
                    prefill_seqs: float) -> tuple[float, float]:
        if any(np.ndim(v) for v in (new_tokens, prefill_pairs, decode_tokens, context_tokens, prefill_seqs)):
            raise TypeError("a composed step is costed one step at a time (floats), not over arrays of steps")
        t = e = 0.0
        m = new_tokens + decode_tokens
        if m > 0:
            for part, flop_per_token, weight_bytes, bytes_per_token, count in self.linear:
                ti, ei = part.time_energy(flop_per_token * m, weight_bytes + bytes_per_token * m)
                t += count * ti
                e += count * ei
        sampled = decode_tokens + prefill_seqs
        if sampled > 0:
            part, flop_per_row, weight_bytes, bytes_per_row = self.head
            ti, ei = part.time_energy(flop_per_row * sampled, weight_bytes + bytes_per_row * sampled)
            t += ti
            e += ei
        n = self.layers
        p = self.parts
        if new_tokens > 0:
            ti, ei = p.prefill_attention.time_energy(self.attn_flop * prefill_pairs, self.prefill_bytes_per_token * new_tokens)
            # No KV-cache term: the prefill layer attends the K and V it has just computed (and the
            # calibrated prefill layer reads no cache), so its fit has none.
            to, eo = p.prefill_overhead.time_energy(new_tokens * self.hidden)
            t += n * (ti + to)
            e += n * (ei + eo)
        if decode_tokens > 0:
            ti, ei = p.decode_attention.time_energy(self.attn_flop * context_tokens,
                                                    self.decode_bytes_per_context_token * context_tokens
                                                    + self.decode_bytes_per_token * decode_tokens)
            to, eo = p.decode_overhead.time_energy(decode_tokens * self.hidden,
                                                   self.kv_elements_per_context_token * context_tokens)
            t += n * (ti + to)
            e += n * (ei + eo)
        return t, e
