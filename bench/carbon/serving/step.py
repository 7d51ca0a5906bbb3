"""The time and energy of one continuous-batching step from an architecture and a device model.

A step prefills the prompts admitted in it and decodes one token for every running request. Its
work is counted from the architecture (linear layers: 2 flops per weight per token, weights read
once per step; a mixture of experts runs each token's routed experts only and reads the experts
its tokens route to, `StepCost.experts_read_bytes`; the LM head: 2 flops per weight only for the positions whose logits are sampled, each
decode token and the last token of each prompt prefilled, as vLLM computes them; attention:
4 x heads x head_dim flops per query-key pair, the KV cache read once; a model's sliding-window layers
attend to, and hold the KV of, at most their window, which the simulator counts in the context and
pairs it passes; a tensor-parallel replica adds two all-reduces of each token's hidden state per
layer where its GPU type has a measured all-reduce table, `device.allreduce_s`);
time = max(flops / rate, bytes / bandwidth) + overhead, energy = e_flop x flops + e_byte x bytes
+ P_0 x time (the energy roofline of `bench.profile.curves`); a calibrated device adds each sampled
position's per-request work (`DeviceModel.seq_s`, `e_seq_j`) to both. A device model with measured parts
(`DeviceModel.parts`, `device.from_parts`) composes the step from them instead (`composed.py`). A
device with a KV-cache bandwidth of its own (`DeviceModel.kv_bytes_per_s`, the calibrated datasheet
models) times the linear layers and attention apart (`split_step_s`); a device with a power cap
stretches a step that would draw more than the cap.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from bench.carbon.serving.composed import ComposedStep
from bench.carbon.serving.device import DeviceModel, allreduce_s
from bench.carbon.serving.models import ModelSpec


@dataclass(frozen=True)
class StepCost:
    """Coefficients of one step's flops and bytes, so the simulation's inner loop is arithmetic."""

    flop_per_token: float  # linear layers, per token processed (prefill or decode)
    flop_per_prefill_pair: float  # attention, per causal query-key pair of a prompt
    flop_per_context_token: float  # decode attention, per cached token read
    bytes_per_step: float  # weights a step streams (the layers and the LM head)
    bytes_per_context_token: float  # KV cache read in decode
    bytes_per_new_token: float  # KV written
    device: DeviceModel
    composed: ComposedStep | None = None  # the step from measured parts, where the device model has them
    weight_bytes: float = 0.0  # weights held in memory (what the KV cache cannot use); 0: bytes_per_step
    flop_per_sampled_token: float = 0.0  # LM head, per position whose logits are computed
    # Sliding-window attention (`ModelSpec.window_tokens`): the simulator counts the context and prefill
    # pairs the windowed layers attend to, and the KV pages they hold, from these two.
    window_tokens: int = 0
    windowed_share: float = 0.0
    kv_layers: int = 0  # layers holding KV (the simulator counts a windowed model's pages per layer)
    windowed_layers: int = 0
    # Tensor parallelism: all-reduces per step (after attention and after the MLP of every layer) of
    # each token's hidden state; costed only on a device with an all-reduce table (`device.allreduce_s`).
    allreduces_per_step: int = 0
    allreduce_bytes_per_token: float = 0.0
    # Mixture of experts (`ModelSpec.expert_bytes`, `expert_share`): a step of T tokens also reads the
    # share 1 - (1 - expert_share)^T of the routed experts' weights (`experts_read_bytes`).
    expert_bytes: float = 0.0
    expert_share: float = 0.0
    # Mamba layers (`ModelSpec.state_bytes_per_seq`): each request holds a fixed state (memory the
    # simulator sets aside for `max_batch` requests), read and written at each of its sampled positions.
    state_bytes_per_seq: float = 0.0
    bytes_per_sampled_seq: float = 0.0

    @classmethod
    def of(cls, model: ModelSpec, device: DeviceModel) -> "StepCost":
        attn = 4.0 * model.kv_layers * model.heads * model.head_dim
        kv_copies = model.kv_copies(device.devices)
        kv_bytes = model.kv_bytes_per_token * kv_copies
        composed = ComposedStep.of(model, device.parts, kv_copies) if device.parts is not None else None
        return cls(2.0 * model.active_linear_params, attn, attn, model.streamed_bytes_per_step, kv_bytes,
                   kv_bytes, device, composed, weight_bytes=model.weight_bytes,
                   flop_per_sampled_token=model.lm_head_flop_per_token, window_tokens=model.window_tokens,
                   windowed_share=model.windowed_share, kv_layers=model.kv_layers,
                   windowed_layers=model.windowed_layers if model.window_tokens else 0, allreduces_per_step=model.blocks,
                   allreduce_bytes_per_token=float(model.hidden * model.dtype_bytes),
                   expert_bytes=model.expert_bytes, expert_share=model.expert_share,
                   state_bytes_per_seq=model.state_bytes_per_seq, bytes_per_sampled_seq=2.0 * model.state_bytes_per_seq)

    def experts_read_bytes(self, tokens):
        """Routed experts' weights a step of `tokens` tokens reads (expected, routing uniform and
        independent: `ModelSpec.expert_share`); 0 for a dense model. Works on numpy arrays too."""
        return self.expert_bytes * (1.0 - (1.0 - self.expert_share) ** tokens) if self.expert_bytes else 0.0

    @property
    def resident_bytes(self) -> float:
        """Weights in memory, beside the KV cache."""
        return self.weight_bytes or self.bytes_per_step

    def time_energy(self, new_tokens: float, prefill_pairs: float, decode_tokens: float, context_tokens: float,
                    prefill_seqs: float) -> tuple[float, float]:
        """(seconds, joules) of one step that prefills `new_tokens` prompt tokens of `prefill_seqs` requests
        and decodes one token of each of `decode_tokens` requests; floats, or numpy arrays of many steps
        (not for a composed step)."""
        d = self.device
        comm_s = (self.allreduces_per_step * allreduce_s(d, (new_tokens + decode_tokens) * self.allreduce_bytes_per_token)
                  if d.allreduce else 0.0)
        if self.composed is not None:
            t, e = self.composed.time_energy(new_tokens, prefill_pairs, decode_tokens, context_tokens, prefill_seqs)
            return t + comm_s, e + d.p0_w * comm_s
        flops = (self.flop_per_token * (new_tokens + decode_tokens) + self.flop_per_sampled_token
                 * (decode_tokens + prefill_seqs) + self.flop_per_prefill_pair * prefill_pairs
                 + self.flop_per_context_token * context_tokens)
        sampled = decode_tokens + prefill_seqs
        nbytes = (self.bytes_per_step + self.experts_read_bytes(new_tokens + decode_tokens)
                  + self.bytes_per_context_token * context_tokens + self.bytes_per_new_token * (new_tokens + decode_tokens))
        if self.bytes_per_sampled_seq:
            nbytes = nbytes + self.bytes_per_sampled_seq * sampled
        if d.kv_bytes_per_s:
            t = split_step_s(self, new_tokens + decode_tokens, prefill_pairs, context_tokens,
                             sampled) + d.overhead_s
        else:
            t = _max(flops / d.flop_per_s, nbytes / d.bytes_per_s) + d.overhead_s
        if d.seq_s:  # each sampled position's per-request work
            t = t + d.seq_s * sampled
        dynamic_j = d.e_flop_j * flops + d.e_byte_j * nbytes
        if d.e_kv_byte_j:  # KV-cache reads at their own energy per byte (a calibration from before they cost a streamed byte's)
            dynamic_j = dynamic_j + (d.e_kv_byte_j - d.e_byte_j) * self.bytes_per_context_token * context_tokens
        if d.e_seq_j:
            dynamic_j = dynamic_j + d.e_seq_j * sampled
        # At the board's power limit the clocks drop and the step takes as long as the limit allows (no cap: 0 s);
        # then the replica's GPUs exchange each layer's activations twice (all-reduce), at static power.
        t = _max(t, dynamic_j / (d.power_cap_w - d.p0_w)) + comm_s
        return t, dynamic_j + d.p0_w * t


    def scalar(self):
        """`time_energy` for floats as a closure over its coefficients: the simulation calls it once
        per step, millions of times a plan, where attribute lookups and the array checks of
        `time_energy` cost more than its arithmetic. The same formulas in the same order (a test
        holds the two equal)."""
        d = self.device
        comm = _scalar_allreduce(d.allreduce, self.allreduces_per_step, self.allreduce_bytes_per_token)
        if self.composed is not None:
            if comm is None:
                return self.composed.time_energy
            composed, p0_w = self.composed.time_energy, d.p0_w

            def composed_step(new_tokens, prefill_pairs, decode_tokens, context_tokens, prefill_seqs):
                t, e = composed(new_tokens, prefill_pairs, decode_tokens, context_tokens, prefill_seqs)
                comm_s = comm(new_tokens + decode_tokens)
                return t + comm_s, e + p0_w * comm_s

            return composed_step
        f_tok, f_samp = self.flop_per_token, self.flop_per_sampled_token
        f_pair, f_ctx = self.flop_per_prefill_pair, self.flop_per_context_token
        b_step, b_ctx, b_new = self.bytes_per_step, self.bytes_per_context_token, self.bytes_per_new_token
        rate, bw, kv_bw, overhead = d.flop_per_s, d.bytes_per_s, d.kv_bytes_per_s, d.overhead_s
        e_flop, e_byte, p0 = d.e_flop_j, d.e_byte_j, d.p0_w
        e_kv_extra = (d.e_kv_byte_j - d.e_byte_j) * b_ctx if d.e_kv_byte_j else 0.0
        seq_s, e_seq = d.seq_s, d.e_seq_j
        headroom_w = d.power_cap_w - d.p0_w
        b_experts, keep = self.expert_bytes, 1.0 - self.expert_share
        b_state = self.bytes_per_sampled_seq

        def step(new_tokens: float, prefill_pairs: float, decode_tokens: float, context_tokens: float,
                 prefill_seqs: float) -> tuple[float, float]:
            tokens = new_tokens + decode_tokens
            sampled = decode_tokens + prefill_seqs
            flops = f_tok * tokens + f_samp * sampled + f_pair * prefill_pairs + f_ctx * context_tokens
            weights = b_step + b_experts * (1.0 - keep ** tokens) if b_experts else b_step
            nbytes = weights + b_ctx * context_tokens + b_new * tokens
            streamed = weights + b_new * tokens
            if b_state:
                nbytes = nbytes + b_state * sampled
                streamed = streamed + b_state * sampled
            if kv_bw:
                linear = (f_tok * tokens + f_samp * sampled) / rate + streamed / bw
                attn_flop_s = (f_pair * prefill_pairs + f_ctx * context_tokens) / rate
                attn_kv_s = b_ctx * context_tokens / kv_bw
                t = linear + (attn_flop_s if attn_flop_s > attn_kv_s else attn_kv_s) + overhead
            else:
                flop_s, byte_s = flops / rate, nbytes / bw
                t = (flop_s if flop_s > byte_s else byte_s) + overhead
            if seq_s:
                t = t + seq_s * sampled
            dynamic_j = e_flop * flops + e_byte * nbytes
            if e_kv_extra:
                dynamic_j = dynamic_j + e_kv_extra * context_tokens
            if e_seq:
                dynamic_j = dynamic_j + e_seq * sampled
            capped_s = dynamic_j / headroom_w
            if capped_s > t:
                t = capped_s
            if comm is not None:
                t = t + comm(tokens)
            return t, dynamic_j + p0 * t

        return step


def _scalar_allreduce(table: tuple, per_step: int, bytes_per_token: float):
    """Seconds of a step's all-reduces for a token count, by bisection over the measured table (the
    same values as `allreduce_s`, without numpy's per-call overhead); None without a table."""
    if not table:
        return None
    sizes, times, tail_bytes_per_s = table
    last = len(sizes) - 1

    def comm(tokens: float) -> float:
        # numpy.interp's own arithmetic (slope x offset + left value; a knot's value exactly), so the
        # closure and `time_energy` agree to the bit
        b = tokens * bytes_per_token
        if b <= sizes[0]:
            return per_step * (times[0] + 0.0)
        if b >= sizes[last]:
            return per_step * (times[last] + (b - sizes[last]) / tail_bytes_per_s)
        i = bisect.bisect_right(sizes, b)
        s0, t0 = sizes[i - 1], times[i - 1]
        value = t0 if b == s0 else (times[i] - t0) / (sizes[i] - s0) * (b - s0) + t0
        return per_step * (value + 0.0)

    return comm


def split_step_s(cost: StepCost, tokens: float, prefill_pairs: float, context_tokens: float, sampled: float
                 ) -> float:
    """A step's busy time when the linear layers and attention run one after the other: the linear
    layers take their flops at the flop rate plus their weights at the streaming bandwidth (at serving
    batch sizes the GEMMs sit near the ridge point, where neither bound alone holds; the sum is the
    no-overlap bound, and what the ML.ENERGY H100 servers fit best), attention the larger of its flops
    at the flop rate and its KV-cache reads at the bandwidth they achieve (`DeviceModel.kv_bytes_per_s`).
    `sampled`: positions whose logits the LM head computes. Works on numpy arrays too."""
    d = cost.device
    streamed = cost.bytes_per_step + cost.experts_read_bytes(tokens) + cost.bytes_per_new_token * tokens
    if cost.bytes_per_sampled_seq:  # Mamba state, read and written per sampled position
        streamed = streamed + cost.bytes_per_sampled_seq * sampled
    linear = ((cost.flop_per_token * tokens + cost.flop_per_sampled_token * sampled) / d.flop_per_s
              + streamed / d.bytes_per_s)
    attention = _max((cost.flop_per_prefill_pair * prefill_pairs + cost.flop_per_context_token * context_tokens)
                     / d.flop_per_s, cost.bytes_per_context_token * context_tokens / d.kv_bytes_per_s)
    return linear + attention


def _max(a, b):
    """max of two floats, or elementwise of arrays (`time_energy` takes either)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return max(a, b)
