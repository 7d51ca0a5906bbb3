"""A measured configuration replayed in the serving simulator, as ML.ENERGY ran it: a backlog of
requests all queued at once, `max_num_seqs` running at most, a per-step token budget, vLLM's share of
GPU memory less its runtime and profiled activation peak for weights and KV cache (paged, with preemption
by recompute when it is full).

With every request queued at time 0, what the simulator schedules in each step (which requests run,
their context, which prompts are prefilled, which are preempted) depends on the batch cap, the budget
and the memory, never on how fast a step runs. So a replay records the schedule once per
configuration (`schedule`), and any device model's time and energy of every step follow from it in
one vectorised call of `StepCost.time_energy` (`predict`): the calibration evaluates thousands of
device models over the same schedules in seconds.

What is compared is what ML.ENERGY measured (`bench/carbon/data/SOURCES.md`): GPU energy over the
steady-state window (from the moment `max_num_seqs` requests have their first token to the moment all
but `max_num_seqs + 1` have finished, prefills admitted in it included) per output token in it; the
time-weighted mean of running requests in it; and inter-token gaps pooled over all tokens of all
requests of the whole run (ramp-up and drain included, as their client records them).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.carbon.inputs import embodied
from bench.carbon.serving import device as devices
from bench.carbon.serving.device import DeviceModel
from bench.carbon.serving.models import ModelSpec
from bench.carbon.serving.simulate import simulate
from bench.carbon.serving.step import StepCost
from bench.carbon.validation.measurements import ValidateConf, default_requests

PAGE_TOKENS = 16  # vLLM's default KV block size


@dataclass(frozen=True)
class Schedule:
    """What ran in each step of one replayed configuration (independent of the device's speed)."""

    max_num_seqs: int
    requests: int
    new_tokens: np.ndarray  # prompt tokens prefilled per step
    prefill_pairs: np.ndarray
    decode_tokens: np.ndarray
    context_tokens: np.ndarray
    prefill_seqs: np.ndarray  # requests prefilled per step (each has its last prompt position's logits computed)
    tokens: np.ndarray  # output tokens produced per step (running requests, newly admitted ones included)
    gap_from: np.ndarray  # step indices of consecutive tokens of one request: each is one inter-token gap
    gap_to: np.ndarray
    window: tuple[int, int]  # steps [first, last) of the steady-state window
    preemptions: int
    # False where ML.ENERGY's window (module docstring) does not exist in the replay: a backlog no larger
    # than max_num_seqs + 1, or one that drains before the batch fills. `window` then runs from the last
    # admission (or the start) to the end, the drain included: not comparable with the measurement.
    steady: bool = True


@dataclass(frozen=True)
class Prediction:
    energy_per_token_j: float  # GPU energy per output token over the steady-state window
    p90_itl_s: float
    median_itl_s: float
    avg_batch: float
    power_w: float
    tokens_per_s: float


class _Recorder:
    """Stands in for a StepCost in the simulator and records each step's work."""

    def __init__(self, cost: StepCost):
        self.device = cost.device
        self.resident_bytes, self.state_bytes_per_seq = cost.resident_bytes, cost.state_bytes_per_seq
        self.bytes_per_context_token = cost.bytes_per_context_token
        self.window_tokens, self.windowed_share = cost.window_tokens, cost.windowed_share
        self.kv_layers, self.windowed_layers = cost.kv_layers, cost.windowed_layers
        self.steps: list[tuple[float, float, float, float, float]] = []

    def time_energy(self, new_tokens: float, prefill_pairs: float, decode_tokens: float, context_tokens: float,
                    prefill_seqs: float) -> tuple[float, float]:
        self.steps.append((new_tokens, prefill_pairs, decode_tokens, context_tokens, prefill_seqs))
        return 1e-3, 1.0  # any positive time: the schedule does not depend on it

    def scalar(self):
        return self.time_energy  # the simulator's per-step call


GIB = 2.0 ** 30
# Bytes per logit in vLLM's profiled sampler run: the logits in the model's dtype, their fp32 copy, the
# fp32 probabilities and one fp32 working buffer (its profile skips top-k, top-p and logprobs).
SAMPLER_BYTES_PER_LOGIT = 14


def activation_bytes(model: ModelSpec, tp: int, max_num_batched_tokens: int, max_num_seqs: int) -> float:
    """vLLM's profiled activation peak on one GPU, which its KV cache does without: a forward of the
    whole step budget (per token the hidden state three times, input, output and residual, and one MLP
    output per matrix, gate, up and activated for SwiGLU, over its routed experts in a mixture of experts) plus the sampler's
    logits of `max_num_seqs` requests over the whole vocabulary (gathered on each GPU). A structural estimate: for Llama-3-8B at 8,192 tokens and 256
    requests it gives 1.27 GiB where vLLM's own profile reported 1.26 GiB (PR #10511), and the same
    profile at tensor parallel 2 reported the same peak, so it is not split across the replica (`tp`
    kept for the signature); torch.compile and CUDA graphs of later versions may change it."""
    del tp  # the TP-2 profile's peak equalled the TP-1 one
    forward = max_num_batched_tokens * model.dtype_bytes * (3 * model.hidden + model.mlp_matrices * model.mlp_width)
    sampler = max_num_seqs * model.vocab * SAMPLER_BYTES_PER_LOGIT
    return float(forward + sampler)


def serving_memory_bytes(gpu: str, tp: int, conf: ValidateConf, model: ModelSpec | None = None,
                         max_num_seqs: int = 0) -> float:
    """The memory vLLM gives weights and KV cache on a replica of `tp` GPUs: its utilisation share of the
    memory the driver reports, less the runtime's reserve and (given the model) the profiled activation
    peak at `max_num_seqs`."""
    reserve = (conf.runtime_reserve_gib if tp == 1 else conf.runtime_reserve_tp_gib) * GIB
    act = activation_bytes(model, tp, conf.max_num_batched_tokens, max_num_seqs) if model is not None else 0.0
    return tp * (conf.gpu_memory_utilization * devices.memory_bytes(gpu) - reserve - act)


def backlog(model: ModelSpec, avg_output_len: float, requests: int, conf: ValidateConf
            ) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output tokens of the queued requests (the same draws for every configuration)."""
    rng = np.random.default_rng(conf.seed)
    mu = math.log(conf.prompt_mean_tokens) - conf.prompt_sigma ** 2 / 2
    window = min(model.context_tokens, conf.max_model_len_tokens)  # what the server was started with
    prompt = np.clip(np.rint(rng.lognormal(mu, conf.prompt_sigma, requests)), 1, window // 2)
    output = np.clip(np.rint(rng.exponential(avg_output_len, requests)), 1, conf.max_output_tokens)
    output = np.minimum(output, window - prompt)
    return prompt.astype(int), output.astype(int)


def schedule(model: ModelSpec, device: DeviceModel, row: pd.Series, conf: ValidateConf, gpu: str) -> Schedule:
    """Replay one measured row (its max_num_seqs and avg_output_len) and record what each step ran, with
    the memory vLLM would leave weights and KV cache at that max_num_seqs on `gpu`."""
    b = int(row["max_num_seqs"])
    device = dataclasses.replace(device, memory_bytes=serving_memory_bytes(gpu, device.devices, conf, model, b))
    gpu_model = row.get("gpu_model")
    if not isinstance(gpu_model, str) or not gpu_model.strip():  # no column, or an empty cell: the GPU replayed
        gpu_model = str(embodied.gpus().loc[gpu, "name_match"])
    n = conf.num_requests or default_requests(b, row.get("model_id"), gpu_model, int(row.get("num_gpus", 1)),
                                              row.get("task"))
    prompt, output = backlog(model, float(row["avg_output_len"]), n, conf)
    rec = _Recorder(StepCost.of(model, device))
    # vLLM's budget counts decode tokens too: up to max_num_seqs of it go to decodes.
    budget = max(1, conf.max_num_batched_tokens - b)
    res = simulate(np.zeros(n), prompt, output, rec, b, max_prefill_tokens=budget, page_tokens=PAGE_TOKENS)  # type: ignore[arg-type]
    steps = np.array(rec.steps, dtype=float).reshape(-1, 5)
    request, first, last = res.segments.T
    lengths = last - first + 1
    starts = np.repeat(first - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
    token_step = np.arange(lengths.sum()) + starts
    token_request = np.repeat(request, lengths)
    order = np.lexsort((token_step, token_request))
    token_step, token_request = token_step[order], token_request[order]
    same = token_request[1:] == token_request[:-1]
    first_token = np.full(n, np.iinfo(int).max)
    np.minimum.at(first_token, token_request, token_step)
    finished = np.zeros(n, int)
    np.maximum.at(finished, token_request, token_step)
    k0 = int(np.sort(first_token)[min(b, n) - 1])
    k1 = int(np.sort(finished)[max(n - b - 1, 0) - 1]) if n - b - 1 > 0 else len(steps) - 1
    steady = n - b - 1 > 0 and k1 > k0
    if k1 <= k0:  # the batch never fills before the drain: the whole run
        k0, k1 = -1, len(steps) - 1
    return Schedule(b, n, steps[:, 0], steps[:, 1], steps[:, 2], steps[:, 3], steps[:, 4],
                    np.bincount(token_step, minlength=len(steps)).astype(float),
                    token_step[:-1][same], token_step[1:][same], (k0 + 1, k1 + 1), res.preemptions, steady)


def predict(s: Schedule, cost: StepCost) -> Prediction:
    """The measured quantities as `cost`'s device model predicts them on schedule `s`."""
    t, e = cost.time_energy(s.new_tokens, s.prefill_pairs, s.decode_tokens, s.context_tokens, s.prefill_seqs)
    t, e = np.broadcast_to(t, s.tokens.shape), np.broadcast_to(e, s.tokens.shape)
    end = np.cumsum(t)
    gaps = end[s.gap_to] - end[s.gap_from]
    a, b = s.window
    dur, energy, tokens = t[a:b].sum(), e[a:b].sum(), s.tokens[a:b].sum()
    return Prediction(float(energy / tokens), float(np.percentile(gaps, 90)), float(np.median(gaps)),
                      float((s.tokens[a:b] * t[a:b]).sum() / dur), float(energy / dur), float(tokens / dur))


def replay_device(device: DeviceModel, gpu: str, conf: ValidateConf) -> DeviceModel:
    """`device` with vLLM's share of its memory less the runtime's reserve, not the activation peak,
    which depends on the row: each schedule uses its own row's (`schedule`). For predictions, which do
    not depend on memory."""
    return dataclasses.replace(device, memory_bytes=serving_memory_bytes(gpu, device.devices, conf))


def schedules(model: ModelSpec, device: DeviceModel, gpu: str, rows: pd.DataFrame, conf: ValidateConf
              ) -> list[Schedule]:
    return [schedule(model, device, row, conf, gpu) for _, row in rows.iterrows()]
