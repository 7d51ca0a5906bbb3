"""The memory a vLLM server leaves for weights and KV cache on a replica: its `gpu_memory_utilization`
share of what the driver reports, less the runtime's reserve and its profiled activation peak. One
account for the validation's replay of measured servers and the planner's candidates.

Both reserves come from vLLM's own published profile of Llama-3-8B on one H100 (vllm-project/vllm PR
#10511, its sanity check): of 0.9 x the 79.65 GiB nvidia-smi reports, 14.96 GiB went to weights, 1.26 GiB
to the activation peak and 53.29 GiB to the KV cache, so 2.18 GiB went to the runtime (1.79 GiB of
non-torch memory, CUDA context and libraries, and the 0.43 GiB the driver reports less to CUDA than to
nvidia-smi, 0.9 of it). At tensor parallel 2 its non-torch memory was 3.58 GiB per GPU (communication
buffers): 3.97 GiB. CUDA-graph memory, which later versions capture after sizing the cache, is not counted.
"""
from __future__ import annotations

from bench.carbon.serving.models import ModelSpec

GIB = 2.0 ** 30
RUNTIME_RESERVE_GIB = 2.18  # per GPU of a one-GPU replica
RUNTIME_RESERVE_TP_GIB = 3.97  # per GPU of a tensor-parallel replica
GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default
# Bytes per logit in vLLM's profiled sampler run: the logits in the model's dtype, their fp32 copy, the
# fp32 probabilities and one fp32 working buffer (its profile skips top-k, top-p and logprobs).
SAMPLER_BYTES_PER_LOGIT = 14
# vLLM's step token budget where a configuration sets none: its v1 engine's default for an API server
# on a large GPU (8,192), the budget of ML.ENERGY's runs.
DEFAULT_BATCHED_TOKENS = 8192


def activation_bytes(model: ModelSpec, tp: int, max_num_batched_tokens: int, max_num_seqs: int) -> float:
    """vLLM's profiled activation peak on one GPU, which its KV cache does without: a forward of the
    whole step budget (per token the hidden state three times, input, output and residual, and the MLP's
    gate, up and activated outputs, split across the replica) plus the sampler's logits of `max_num_seqs`
    requests over the whole vocabulary (gathered on each GPU). A structural estimate: for Llama-3-8B at
    8,192 tokens and 256 requests it gives 1.27 GiB where vLLM's own profile reported 1.26 GiB;
    torch.compile and CUDA graphs of later versions may change it."""
    forward = max_num_batched_tokens * model.dtype_bytes * (3 * model.hidden + 3 * model.ffn / tp)
    sampler = max_num_seqs * model.vocab * SAMPLER_BYTES_PER_LOGIT
    return float(forward + sampler)


def serving_memory_bytes(gpu_memory_bytes: float, tp: int, model: ModelSpec | None = None, max_num_seqs: int = 0,
                         max_num_batched_tokens: int = DEFAULT_BATCHED_TOKENS,
                         utilization: float = GPU_MEMORY_UTILIZATION, reserve_gib: float = RUNTIME_RESERVE_GIB,
                         reserve_tp_gib: float = RUNTIME_RESERVE_TP_GIB) -> float:
    """Weights plus KV cache on a replica of `tp` GPUs of `gpu_memory_bytes` each (as the driver reports
    it): `utilization` of it, less the runtime's reserve and (given the model) the activation peak at
    `max_num_seqs` requests and `max_num_batched_tokens` tokens a step."""
    reserve = (reserve_gib if tp == 1 else reserve_tp_gib) * GIB
    act = activation_bytes(model, tp, max_num_batched_tokens, max_num_seqs) if model is not None else 0.0
    return tp * (utilization * gpu_memory_bytes - reserve - act)
