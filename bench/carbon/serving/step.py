"""The time and energy of one continuous-batching step from an architecture and a device model.

A step prefills the prompts admitted in it and decodes one token for every running request. Its
work is counted from the architecture (linear layers: 2 flops per weight per token, weights read
once per step; attention: 4 x heads x head_dim flops per query-key pair, the KV cache read once);
time = max(flops / rate, bytes / bandwidth) + overhead, energy = e_flop x flops + e_byte x bytes
+ P_0 x time (the energy roofline of `bench.profile.curves`). A device model with measured parts
(`DeviceModel.parts`, `device.from_parts`) composes the step from them instead (`composed.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.carbon.serving.composed import ComposedStep
from bench.carbon.serving.device import DeviceModel
from bench.carbon.serving.models import ModelSpec


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
    composed: ComposedStep | None = None  # the step from measured parts, where the device model has them

    @classmethod
    def of(cls, model: ModelSpec, device: DeviceModel) -> "StepCost":
        attn = 4.0 * model.layers * model.heads * model.head_dim
        composed = ComposedStep.of(model, device.parts) if device.parts is not None else None
        return cls(2.0 * model.linear_params + 2.0 * model.vocab * model.hidden, attn, attn, model.weight_bytes,
                   model.kv_bytes_per_token, model.kv_bytes_per_token, device, composed)

    def time_energy(self, new_tokens: float, prefill_pairs: float, decode_tokens: float, context_tokens: float
                    ) -> tuple[float, float]:
        if self.composed is not None:
            return self.composed.time_energy(new_tokens, prefill_pairs, decode_tokens, context_tokens)
        d = self.device
        flops = (self.flop_per_token * (new_tokens + decode_tokens) + self.flop_per_prefill_pair * prefill_pairs
                 + self.flop_per_context_token * context_tokens)
        nbytes = (self.bytes_per_step + self.bytes_per_context_token * context_tokens
                  + self.bytes_per_new_token * (new_tokens + decode_tokens))
        t = max(flops / d.flop_per_s, nbytes / d.bytes_per_s) + d.overhead_s
        return t, d.e_flop_j * flops + d.e_byte_j * nbytes + d.p0_w * t
