"""LLM architectures as the serving model needs them: layers, widths, heads, vocabulary; the
weight and KV-cache bytes they imply, the bytes a step streams and the flops of its LM head.

A preset is named by its key (`qwen3_14b`), its display name (`Qwen3-14B`) or a Hugging Face id of
a model with that architecture (`Qwen/Qwen3-14B`), in any case (`preset`, `preset_key`)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.arch import ARCHS, LayerDims


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
    context_tokens: int  # the window prompt + output must fit in
    dtype_bytes: int = 2
    tied_embeddings: bool = False  # the LM head is the input embedding matrix (one copy in memory)
    # Weights held in memory that a text-only step never runs (Gemma 3's vision tower): memory, not traffic.
    extra_params: int = 0
    hf_ids: tuple[str, ...] = ()  # Hugging Face ids of models with exactly this architecture
    # Sliding-window attention (Gemma 3): `windowed_layers` of the layers attend to the last
    # `window_tokens` tokens only; 0: every layer attends to the whole context.
    window_tokens: int = 0
    windowed_layers: int = 0
    # Mixture of experts (Qwen3-30B-A3B): every layer's MLP is `experts` routed experts of width
    # `expert_ffn` (a router picks `experts_per_token` of them per token) in place of the dense `ffn`
    # (0 then); 0 experts: a dense model.
    experts: int = 0
    experts_per_token: int = 0
    expert_ffn: int = 0
    # Hybrid models (Nemotron-H: NVIDIA-Nemotron-Nano-9B-v2): each layer is one block, `attention_layers`
    # attention, `mlp_layers` MLPs and `mamba_layers` Mamba-2 mixers (`mamba_heads` heads of
    # `mamba_head_dim`, state size `ssm_state`, `mamba_groups` groups, a causal convolution of `conv_kernel`).
    # All three 0: a plain decoder, every layer attention and MLP.
    attention_layers: int = 0
    mlp_layers: int = 0
    mamba_layers: int = 0
    mamba_heads: int = 0
    mamba_head_dim: int = 0
    ssm_state: int = 0
    mamba_groups: int = 0
    conv_kernel: int = 0
    mlp_matrices: int = 3  # gate, up and down (SwiGLU); 2 for an ungated MLP (Nemotron-H's squared ReLU)

    def __post_init__(self) -> None:
        if self.hybrid and self.attention_layers + self.mlp_layers + self.mamba_layers != self.layers:
            raise ValueError(f"{self.name}: attention_layers {self.attention_layers} + mlp_layers {self.mlp_layers} + "
                             f"mamba_layers {self.mamba_layers} must be its {self.layers} layers")
        if self.window_tokens < 0 or not 0 <= self.windowed_layers <= self.kv_layers:
            raise ValueError(f"{self.name}: window_tokens {self.window_tokens} must be >= 0 and windowed_layers "
                             f"{self.windowed_layers} within 0..{self.kv_layers}")
        if self.experts and not (0 < self.experts_per_token <= self.experts and self.expert_ffn > 0):
            raise ValueError(f"{self.name}: experts_per_token {self.experts_per_token} must be within 1..{self.experts} "
                             f"and expert_ffn {self.expert_ffn} > 0")
        if self.mamba_layers and min(self.mamba_heads, self.mamba_head_dim, self.ssm_state, self.mamba_groups,
                                     self.conv_kernel) < 1:
            raise ValueError(f"{self.name}: a Mamba-2 layer needs mamba_heads, mamba_head_dim, ssm_state, "
                             "mamba_groups and conv_kernel >= 1")

    @property
    def hybrid(self) -> bool:
        """Layers of one block each (`attention_layers`, `mlp_layers`, `mamba_layers`)."""
        return bool(self.attention_layers or self.mlp_layers or self.mamba_layers)

    @property
    def kv_layers(self) -> int:
        """Layers with attention, each holding K and V of every cached token."""
        return self.attention_layers if self.hybrid else self.layers

    @property
    def _mlp_layer_count(self) -> int:
        return self.mlp_layers if self.hybrid else self.layers

    @property
    def blocks(self) -> int:
        """Attention, MLP and Mamba blocks a token passes (two a layer in a plain decoder): each ends in
        an all-reduce on a tensor-parallel replica."""
        return self.kv_layers + self._mlp_layer_count + self.mamba_layers

    @property
    def windowed_share(self) -> float:
        """The share of attention layers whose attention (and, in vLLM's hybrid KV-cache manager, whose
        cache) is limited to the window."""
        return self.windowed_layers / self.kv_layers if self.window_tokens else 0.0

    def attended_context(self, context_tokens):
        """Cached tokens a decode token's attention reads, in whole-model token units (all layers'
        K and V of one token = `kv_bytes_per_token`): windowed layers read at most the window."""
        if not self.windowed_share:
            return context_tokens
        return context_tokens - self.windowed_share * np.maximum(np.asarray(context_tokens, float) - self.window_tokens, 0)

    def attended_pairs(self, prompt_tokens):
        """Causal query-key pairs of prefilling a prompt, in whole-model units: b(b+1)/2 with full
        attention; a windowed layer's query i attends to min(i, W) keys, which drops (b-W)(b-W+1)/2."""
        b = np.asarray(prompt_tokens, float)
        full = b * (b + 1) / 2
        if not self.windowed_share:
            return full
        over = np.maximum(b - self.window_tokens, 0)
        return full - self.windowed_share * over * (over + 1) / 2

    @property
    def _attention_params(self) -> int:
        """One layer's Q, K, V and O projections."""
        return self.hidden * self.heads * self.head_dim * 2 + self.hidden * self.kv_heads * self.head_dim * 2

    @property
    def expert_params(self) -> int:
        """One routed expert's projections, `mlp_matrices` of them (0 for a dense model)."""
        return self.mlp_matrices * self.hidden * self.expert_ffn if self.experts else 0

    @property
    def _mlp_dense_params(self) -> int:
        """One MLP's weights every token runs: the dense MLP and the router."""
        return self.mlp_matrices * self.hidden * self.ffn + self.hidden * self.experts

    @property
    def _mamba_inner(self) -> int:
        return self.mamba_heads * self.mamba_head_dim

    @property
    def _mamba_conv_channels(self) -> int:
        """Channels of the causal convolution: x, B and C."""
        return self._mamba_inner + 2 * self.mamba_groups * self.ssm_state

    @property
    def _mamba_params(self) -> int:
        """One Mamba-2 mixer: the input projection (z, x, B, C and dt), the convolution, A, D, dt's bias,
        the gated norm and the output projection."""
        inner = self._mamba_inner
        in_proj = self.hidden * (2 * inner + 2 * self.mamba_groups * self.ssm_state + self.mamba_heads)
        return in_proj + self._mamba_conv_channels * self.conv_kernel + 3 * self.mamba_heads + inner + inner * self.hidden

    @property
    def _every_token_params(self) -> int:
        """The layers' weights every token runs: attention, dense MLPs and routers, Mamba mixers."""
        return (self.kv_layers * self._attention_params + self._mlp_layer_count * self._mlp_dense_params
                + self.mamba_layers * self._mamba_params)

    @property
    def linear_params(self) -> int:
        """The layers' weights in memory: every expert of a mixture of experts."""
        return self._every_token_params + self._mlp_layer_count * self.experts * self.expert_params

    @property
    def active_linear_params(self) -> int:
        """The layers' weights one token runs (its `experts_per_token` experts): 2 flops each. (A Mamba
        mixer's scan, about 1% of its projections' flops, is not counted.)"""
        return self._every_token_params + self._mlp_layer_count * self.experts_per_token * self.expert_params

    @property
    def expert_bytes(self) -> float:
        """All routed experts' weights over the layers: what a step reads of them if every expert is
        routed a token (`expert_share` says how many are)."""
        return float(self._mlp_layer_count * self.experts * self.expert_params * self.dtype_bytes)

    @property
    def state_bytes_per_seq(self) -> float:
        """A request's Mamba state over the layers (0 without Mamba layers): the convolution's last
        `conv_kernel - 1` inputs and the SSM state, in the model's dtype, as vLLM holds them; of fixed
        size whatever the context, read and written once a step."""
        per_layer = self._mamba_conv_channels * (self.conv_kernel - 1) + self._mamba_inner * self.ssm_state
        return float(self.mamba_layers * per_layer * self.dtype_bytes)

    @property
    def expert_share(self) -> float:
        """The chance a token routes to a given expert, `experts_per_token / experts` (0: dense). A step
        of T tokens reads the expected share 1 - (1 - expert_share)^T of the experts' weights: routing
        taken as uniform and independent across tokens, which reads the most (real routers are
        skewed toward some experts and correlated within a sequence, so fewer are read)."""
        return self.experts_per_token / self.experts if self.experts else 0.0

    @property
    def mlp_width(self) -> int:
        """A token's MLP width as run: the dense `ffn`, or its experts' summed width."""
        return self.ffn + self.experts_per_token * self.expert_ffn

    @property
    def embedding_params(self) -> int:
        """One vocab x hidden matrix: the input embedding, and the LM head (the same one where tied)."""
        return self.vocab * self.hidden

    @property
    def weight_bytes(self) -> float:
        """The weights in memory: the layers, the embedding once where tied (twice where the LM head is
        its own matrix), and any weights a text step does not run."""
        embeddings = self.embedding_params * (1 if self.tied_embeddings else 2)
        return float((self.linear_params + embeddings + self.extra_params) * self.dtype_bytes)

    @property
    def streamed_bytes_per_step(self) -> float:
        """Weight bytes one forward step reads whatever its tokens: every layer's but the routed experts'
        (which depend on the step's tokens: `expert_bytes`) and the LM head's. The input embedding
        only gathers the rows of the step's tokens (a few KB), tied or not."""
        return float((self._every_token_params + self.embedding_params) * self.dtype_bytes)

    @property
    def lm_head_flop_per_token(self) -> float:
        """Flops of the LM head for one position whose logits are computed (a sampled position)."""
        return 2.0 * self.embedding_params

    def kv_copies(self, gpus: int) -> float:
        """GPUs each KV head is held and read on in a replica of `gpus`: a replica of more GPUs than the
        model has KV heads gives each GPU one head, so vLLM's tensor parallelism replicates them."""
        return max(1.0, gpus / self.kv_heads)

    @property
    def kv_bytes_per_token(self) -> float:
        return float(2 * self.kv_layers * self.kv_heads * self.head_dim * self.dtype_bytes)

    @property
    def layer(self) -> LayerDims:
        """One decoder layer's widths, as the linear and layer cases take them (dense layers only)."""
        if self.experts or self.hybrid:
            kind = "a mixture of experts" if self.experts else "a hybrid of layer kinds"
            raise ValueError(f"{self.name} is {kind}: the linear and layer cases measure dense decoder layers "
                             "only, so its step is not composed from measured parts")
        return LayerDims(self.hidden, self.heads, self.kv_heads, self.head_dim, self.ffn)


def _spec(name: str, arch: str, layers: int, vocab: int, context_tokens: int, hf_ids: tuple[str, ...],
          tied: bool = False, extra_params: int = 0, window: tuple[int, int] = (0, 0)) -> ModelSpec:
    d = ARCHS[arch]  # the layer widths have one source, shared with the kernel cases
    return ModelSpec(name, layers, d.hidden, d.heads, d.kv_heads, d.head_dim, d.ffn, vocab, context_tokens,
                     tied_embeddings=tied, extra_params=extra_params, hf_ids=hf_ids, window_tokens=window[0],
                     windowed_layers=window[1])


def _gemma3_window(layers: int, window_tokens: int) -> tuple[int, int]:
    """Gemma 3's attention pattern (config.json `sliding_window`, `sliding_window_pattern` 6): every
    sixth layer attends globally, the other five to the last `window_tokens` tokens."""
    return window_tokens, layers - layers // 6


# Gemma 3 4B, 12B and 27B are image-text models: a SigLIP vision tower and projector of about 0.42 B
# weights (each model's published total less its text model's) sit in memory beside the text model.
_GEMMA3_VISION_PARAMS = 420_000_000

# Each preset: num_hidden_layers, vocab_size and tie_word_embeddings from the config.json of the
# Hugging Face repositories named (layer widths: `kernels.arch.ARCHS`); context windows from their
# model cards: the native window, not one reached only with YaRN scaling (which a plain deployment
# does not enable). Decoder-only models, dense or with routed experts in every layer (Qwen3-30B-A3B),
# or hybrids of attention, MLP and Mamba-2 layers (Nemotron-Nano-9B-v2); not yet shared experts
# (DeepSeek, Llama 4), attention sinks (gpt-oss) or other linear-attention layers (Qwen3-Next).
# Gemma 3's sliding-window layers (5 of every 6 attend to the last 1,024 tokens, 512 for 1B) read
# and, as vLLM's hybrid KV-cache manager frees the pages behind the window, hold at most the window.
PRESETS = {
    # Meta Llama 3 / 3.1 / 3.2 / 3.3 model cards (8k context for Llama 3, 128k from 3.1).
    "llama3_8b": _spec("Llama-3-8B", "llama3_8b", 32, 128256, 8192,
                       ("meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B-Instruct")),
    "llama3_1_8b": _spec("Llama-3.1-8B", "llama3_8b", 32, 128256, 131072,
                         ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct",
                          "meta-llama/Meta-Llama-3.1-8B", "meta-llama/Meta-Llama-3.1-8B-Instruct",
                          "deepseek-ai/DeepSeek-R1-Distill-Llama-8B")),
    "llama3_70b": _spec("Llama-3-70B", "llama3_70b", 80, 128256, 8192,
                        ("meta-llama/Meta-Llama-3-70B", "meta-llama/Meta-Llama-3-70B-Instruct")),
    "llama3_1_70b": _spec("Llama-3.1-70B", "llama3_70b", 80, 128256, 131072,
                          ("meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct",
                           "meta-llama/Meta-Llama-3.1-70B-Instruct", "meta-llama/Llama-3.3-70B-Instruct",
                           "deepseek-ai/DeepSeek-R1-Distill-Llama-70B")),
    "llama3_2_1b": _spec("Llama-3.2-1B", "llama3_2_1b", 16, 128256, 131072,
                         ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"), tied=True),
    "llama3_2_3b": _spec("Llama-3.2-3B", "llama3_2_3b", 28, 128256, 131072,
                         ("meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.2-3B-Instruct"), tied=True),
    # Qwen3 model cards: 32,768 tokens natively (131,072 with YaRN for 4B and up); 4B and smaller tie.
    "qwen3_0_6b": _spec("Qwen3-0.6B", "qwen3_0_6b", 28, 151936, 32768, ("Qwen/Qwen3-0.6B",), tied=True),
    "qwen3_1_7b": _spec("Qwen3-1.7B", "qwen3_1_7b", 28, 151936, 32768, ("Qwen/Qwen3-1.7B",), tied=True),
    "qwen3_4b": _spec("Qwen3-4B", "qwen3_4b", 36, 151936, 32768, ("Qwen/Qwen3-4B",), tied=True),
    "qwen3_8b": _spec("Qwen3-8B", "qwen3_8b", 36, 151936, 32768, ("Qwen/Qwen3-8B",)),
    "qwen3_14b": _spec("Qwen3-14B", "qwen3_14b", 40, 151936, 32768, ("Qwen/Qwen3-14B",)),
    "qwen3_32b": _spec("Qwen3-32B", "qwen3_32b", 64, 151936, 32768, ("Qwen/Qwen3-32B",)),
    # Qwen3-30B-A3B (config.json of Qwen/Qwen3-30B-A3B and its 2507 updates: 48 layers of hidden 2048,
    # 32 query and 4 KV heads of 128, 128 experts of width 768, 8 per token, no dense MLP layer,
    # untied embedding): 30.5 B weights, 3.3 B run per token. 32,768 tokens natively; 262,144 for 2507.
    "qwen3_30b_a3b": ModelSpec("Qwen3-30B-A3B", 48, 2048, 32, 4, 128, 0, 151936, 32768, hf_ids=(
        "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B-Base"), experts=128, experts_per_token=8, expert_ffn=768),
    "qwen3_30b_a3b_2507": ModelSpec("Qwen3-30B-A3B-2507", 48, 2048, 32, 4, 128, 0, 151936, 262144, hf_ids=(
        "Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Thinking-2507"), experts=128,
        experts_per_token=8, expert_ffn=768),
    # Qwen3-235B-A22B (config.json of Qwen/Qwen3-235B-A22B and its 2507 updates: 94 layers of hidden 4096,
    # 64 query and 4 KV heads of 128, 128 experts of width 1,536, 8 per token): 235 B weights, 22 B run
    # per token. 32,768 tokens natively; 262,144 for 2507. (The FP8 checkpoints hold a byte a weight: not these.)
    "qwen3_235b_a22b": ModelSpec("Qwen3-235B-A22B", 94, 4096, 64, 4, 128, 0, 151936, 32768, hf_ids=(
        "Qwen/Qwen3-235B-A22B",), experts=128, experts_per_token=8, expert_ffn=1536),
    "qwen3_235b_a22b_2507": ModelSpec("Qwen3-235B-A22B-2507", 94, 4096, 64, 4, 128, 0, 151936, 262144, hf_ids=(
        "Qwen/Qwen3-235B-A22B-Instruct-2507", "Qwen/Qwen3-235B-A22B-Thinking-2507"), experts=128,
        experts_per_token=8, expert_ffn=1536),
    # NVIDIA-Nemotron-Nano-9B-v2 (config.json: NemotronH, hybrid_override_pattern of 56 layers with 27
    # Mamba-2 mixers of 128 heads of 80, state 128, 8 groups, convolution 4; 4 attention layers of 40 query
    # and 8 KV heads of 128; 25 squared-ReLU MLPs of 15,680; hidden 4,480; untied 131,072 vocabulary):
    # 8.9 B weights. 131,072 tokens of context (its model card: up to 128K).
    "nemotron_nano_9b_v2": ModelSpec("Nemotron-Nano-9B-v2", 56, 4480, 40, 8, 128, 15680, 131072, 131072,
                                     hf_ids=("nvidia/NVIDIA-Nemotron-Nano-9B-v2",), attention_layers=4, mlp_layers=25,
                                     mamba_layers=27, mamba_heads=128, mamba_head_dim=80, ssm_state=128,
                                     mamba_groups=8, conv_kernel=4, mlp_matrices=2),
    # Qwen2.5 model cards (32,768 natively); DeepSeek-R1's Qwen distills keep the architecture.
    "qwen2_5_7b": _spec("Qwen2.5-7B", "qwen2_5_7b", 28, 152064, 32768,
                        ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B")),
    "qwen2_5_14b": _spec("Qwen2.5-14B", "qwen2_5_14b", 48, 152064, 32768,
                         ("Qwen/Qwen2.5-14B", "Qwen/Qwen2.5-14B-Instruct",
                          "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B")),
    "qwen2_5_32b": _spec("Qwen2.5-32B", "qwen2_5_32b", 64, 152064, 32768,
                         ("Qwen/Qwen2.5-32B", "Qwen/Qwen2.5-32B-Instruct",
                          "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B")),
    # Gemma 3 model cards: 32k context for 1B, 128k for the others; the embedding is tied.
    "gemma3_1b": _spec("Gemma-3-1B", "gemma3_1b", 26, 262144, 32768, ("google/gemma-3-1b-it", "google/gemma-3-1b-pt"),
                       tied=True, window=_gemma3_window(26, 512)),
    "gemma3_4b": _spec("Gemma-3-4B", "gemma3_4b", 34, 262208, 131072, ("google/gemma-3-4b-it", "google/gemma-3-4b-pt"),
                       tied=True, extra_params=_GEMMA3_VISION_PARAMS, window=_gemma3_window(34, 1024)),
    "gemma3_12b": _spec("Gemma-3-12B", "gemma3_12b", 48, 262208, 131072,
                        ("google/gemma-3-12b-it", "google/gemma-3-12b-pt"), tied=True,
                        extra_params=_GEMMA3_VISION_PARAMS, window=_gemma3_window(48, 1024)),
    "gemma3_27b": _spec("Gemma-3-27B", "gemma3_27b", 62, 262208, 131072,
                        ("google/gemma-3-27b-it", "google/gemma-3-27b-pt"), tied=True,
                        extra_params=_GEMMA3_VISION_PARAMS, window=_gemma3_window(62, 1024)),
    # Mistral AI model cards: v0.3's 32k window and 32,768-token vocabulary; Nemo 128k; Small 3 32k.
    "mistral_7b": _spec("Mistral-7B", "mistral_7b", 32, 32768, 32768,
                        ("mistralai/Mistral-7B-v0.3", "mistralai/Mistral-7B-Instruct-v0.3")),
    "mistral_nemo_12b": _spec("Mistral-Nemo-12B", "mistral_nemo_12b", 40, 131072, 131072,
                              ("mistralai/Mistral-Nemo-Base-2407", "mistralai/Mistral-Nemo-Instruct-2407")),
    "mistral_small_24b": _spec("Mistral-Small-24B", "mistral_small_24b", 40, 131072, 32768,
                               ("mistralai/Mistral-Small-24B-Base-2501", "mistralai/Mistral-Small-24B-Instruct-2501")),
    # Microsoft's phi-4 model card: 16k context.
    "phi4": _spec("Phi-4", "phi4", 40, 100352, 16384, ("microsoft/phi-4",)),
}


def preset_key(name: str | None) -> str | None:
    """The key of the preset `name` names (its key, display name or a Hugging Face id, any case), or None."""
    if name is None:
        return None
    low = str(name).strip().lower()
    for key, spec in PRESETS.items():
        if low == key or low == spec.name.lower() or low in (h.lower() for h in spec.hf_ids):
            return key
    return None


def preset(name: str | None) -> ModelSpec:
    """The preset `name` names; `KeyError` (saying the choices) for an unknown one."""
    key = preset_key(name)
    if key is None:
        raise KeyError(f"unknown model {name!r}: {CHOICES}")
    return PRESETS[key]


CHOICES = f"choose one of {', '.join(PRESETS)} (or a Hugging Face id of one, e.g. Qwen/Qwen3-14B; any case)"
