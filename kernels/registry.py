"""Benchmark cases: what a kernel computes (flops, minimum bytes, tokens) and how to build a
no-argument closure over preallocated inputs, so allocation stays outside measured windows."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch


@dataclass(frozen=True)
class Shape:
    """Problem size of one benchmark point.

    `seq_len` is the prefill query (= key) length; `context_len` the decode KV length of every
    request; `page_size` applies to paged decode caches only, the `offload_*` fields to the
    CPU-offload decode cases only (share of each request's cache in host memory, host threads,
    request groups streamed per step); `hidden` and `ffn` to the linear-layer and decoder-layer
    cases only (the residual stream's and the MLP's widths, `kernels.arch.LayerDims`).
    """

    batch_size: int
    heads: int
    kv_heads: int
    head_dim: int
    seq_len: int = 1
    context_len: int = 1
    causal: bool = True
    page_size: int = 16
    offload_fraction: float = 0.5
    offload_threads: int = 0
    offload_chunks: int = 4
    hidden: int = 256
    ffn: int = 768


# Shape fields that define a point of each phase; the rest do not change what is computed.
_PHASE_FIELDS = {
    "prefill": ("batch_size", "heads", "kv_heads", "head_dim", "seq_len", "causal"),
    "decode": ("batch_size", "heads", "kv_heads", "head_dim", "context_len"),
}


def causal_pairs(n: int, m: int) -> int:
    """Query-key pairs left by an end-aligned causal mask: query i sees `i + m - n + 1` keys."""
    return n * (m - n + 1) + n * (n - 1) // 2


PHASES = ("prefill", "decode")
FAMILIES = ("triton", "sdpa", "torch", "offload", "custom")  # torch: PyTorch ops (linear layers, whole layers)
# What a case computes: attention, one linear projection of a decoder layer, or a whole layer.
OPS = ("attention", "linear.qkv", "linear.o", "linear.gate_up", "linear.down", "layer")
LAYOUTS = ("contiguous", "paged")
OFFLOAD_MODES = ("none", "cpu", "split", "stream")
DTYPE_NAMES = ("float16", "bfloat16", "float32")

Builder = Callable[["Case", Shape, torch.device, torch.dtype, int], Callable[[], object]]
Parts = tuple[tuple[str, Shape], ...]


def attention_flops(case: "Case", shape: Shape) -> float:
    """Floating-point operations of one attention call: 4 per (query, key, head_dim) pair (QK^T and PV)."""
    b, hq, d = shape.batch_size, shape.heads, shape.head_dim
    if case.phase == "prefill":
        n = shape.seq_len
        pairs = causal_pairs(n, n) if shape.causal else n * n
        return 4.0 * b * hq * d * pairs
    return 4.0 * b * hq * d * shape.context_len


def attention_min_bytes(case: "Case", shape: Shape, dtype: torch.dtype) -> float:
    """Fewest bytes one attention call must move: every input read once, the output written once."""
    e = torch.empty((), dtype=dtype).element_size()
    b, hq, hkv, d = shape.batch_size, shape.heads, shape.kv_heads, shape.head_dim
    if case.phase == "prefill":
        n = shape.seq_len
        return float(e * d * b * (2 * hq * n + 2 * hkv * n))
    kv = 2 * b * hkv * shape.context_len * d * e
    q_and_o = 2 * b * hq * d * e
    index_bytes = b * 4 + (b * math.ceil(shape.context_len / shape.page_size) * 4 if case.paged else 0)
    return float(kv + q_and_o + index_bytes)


def attention_tokens(case: "Case", shape: Shape) -> int:
    """Tokens one call processes: the whole prompt in prefill, one per request in decode."""
    if case.phase == "prefill":
        return shape.batch_size * shape.seq_len
    return shape.batch_size


@dataclass(frozen=True)
class Case:
    """One benchmark case. Its traits are declared here once, and every other module asks the
    case (or the trait columns it writes into each result row) instead of matching its name.

    Args:
        name: registry name, `<phase>.<impl>` for the built-in cases.
        phase: `prefill` or `decode`.
        impl: the implementation name the kernel API takes (`kernels.prefill(..., impl=...)`).
        build_fn: `(case, shape, device, dtype, seed) -> closure`: allocates inputs and returns
            a no-argument callable that runs the kernel once.
        family: `triton`, `sdpa` (a PyTorch baseline), `offload` (CPU offload) or `custom`.
        layout: decode cache layout, `contiguous` or `paged`.
        devices, dtypes, head_dims: what the case runs on (`head_dims=None`: any).
        uses_triton: runs a Triton kernel (so on a CPU it runs in Triton's interpreter).
        offload: the CPU-offload mode this case implements (`none` for device-only cases).
        offload_variants: `(mode, case name)` pairs: the case that runs this kernel with that
            offload mode.
        device_impl: offload cases: what attends the part on the device.
        speed_contender: timed in the kernel speed table (`bench.perf`); a reference
            implementation such as SDPA's math backend is not.
        check: why the case cannot run on a device, if it cannot (None: it can).
        extra_fields: shape fields this case uses beyond its phase's.
        flops_fn, min_bytes_fn, tokens_fn: the work of one call (default: attention's).
        op: what the case computes (`OPS`): `attention`, `linear.<projection>` or `layer`.
        fields: the shape fields that define a point, where they are not its phase's.
        parts_fn: `(case, shape) -> ((case name, shape), ...)`: the registered cases a composite
            case (a decoder layer) runs one after another, so its cost can be composed from theirs.
        shape_check: `(field, why)` for a shape the case cannot take, beyond dtypes and head dims.
    """

    name: str
    phase: str
    impl: str
    build_fn: Builder
    family: str = "custom"
    layout: str = "contiguous"
    devices: tuple[str, ...] = ("cpu", "cuda")
    dtypes: tuple[str, ...] = DTYPE_NAMES
    head_dims: tuple[int, ...] | None = None
    uses_triton: bool = False
    offload: str = "none"
    offload_variants: tuple[tuple[str, str], ...] = ()
    device_impl: str | None = None
    speed_contender: bool = True
    cuda_graph: bool | None = None  # may windows replay it from a CUDA graph (None: unless it offloads or is a user's)
    check: Callable[[torch.device], str | None] | None = None
    extra_fields: tuple[str, ...] = ()
    flops_fn: Callable[["Case", Shape], float] = attention_flops
    min_bytes_fn: Callable[["Case", Shape, torch.dtype], float] = attention_min_bytes
    tokens_fn: Callable[["Case", Shape], int] = attention_tokens
    op: str = "attention"
    fields: tuple[str, ...] | None = None
    parts_fn: Callable[[Case, Shape], Parts] | None = None
    shape_check: Callable[[Shape], tuple[str, str] | None] | None = None

    @property
    def paged(self) -> bool:
        return self.layout == "paged"

    def traits(self) -> dict[str, object]:
        """The traits every result row carries, so tables of points need no registry lookup."""
        return {"phase": self.phase, "impl": self.impl, "impl_family": self.family, "paged": self.paged,
                "device_impl": self.device_impl, "offload_mode": self.offload, "uses_triton": self.uses_triton, "op": self.op}

    @property
    def graph_capturable(self) -> bool:
        """No host work inside a call, so a CUDA graph of calls replays exactly what the call does."""
        if self.cuda_graph is not None:
            return self.cuda_graph
        return self.offload == "none" and self.family != "custom"

    def shape_fields(self, shape: Shape) -> dict[str, object]:
        """The shape fields that identify a point of this case (used in the result key)."""
        keys = (self.fields if self.fields is not None else _PHASE_FIELDS[self.phase]) + (("page_size",) if self.paged else ()) + self.extra_fields
        return {k: getattr(shape, k) for k in keys}

    def flops(self, shape: Shape) -> float:
        """Floating-point operations of one call."""
        return float(self.flops_fn(self, shape))

    def min_bytes(self, shape: Shape, dtype: torch.dtype) -> float:
        """Fewest bytes one call must move."""
        return float(self.min_bytes_fn(self, shape, dtype))

    def tokens(self, shape: Shape) -> int:
        """Tokens one call processes."""
        return int(self.tokens_fn(self, shape))

    def parts(self, shape: Shape) -> Parts:
        """The `(case name, shape)` of each part a composite case runs (empty: not composite)."""
        return self.parts_fn(self, shape) if self.parts_fn else ()

    def offload_variant(self, mode: str) -> str:
        """The case that runs this kernel with CPU offload `mode` (`none`: this case)."""
        if mode not in OFFLOAD_MODES:
            raise ValueError(f"offload mode {mode!r} unknown; choose one of {OFFLOAD_MODES}")
        if mode == "none":
            return self.name
        variants = dict(self.offload_variants)
        if mode not in variants:
            takers = "the contiguous decode kernels decode.triton and decode.torch"
            raise ValueError(f"CPU offload applies to {takers}, not {self.name}")
        return variants[mode]

    def unsupported_reason(self, device: torch.device) -> str | None:
        if device.type not in self.devices:
            return f"case {self.name} runs on {', '.join(self.devices)}, not {device.type}"
        return self.check(device) if self.check else None

    def unsupported_shape_reason(self, shape: Shape, dtype_name: str) -> tuple[str, str] | None:
        """`(field, why)` when this case does not take the shape or dtype, else None."""
        if dtype_name not in self.dtypes:
            return "dtype", f"case {self.name} takes dtype {', '.join(self.dtypes)}"
        if self.head_dims is not None and shape.head_dim not in self.head_dims:
            return "head_dim", f"case {self.name} takes head_dim {', '.join(map(str, self.head_dims))}"
        return self.shape_check(shape) if self.shape_check else None

    def build(self, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Callable[[], object]:
        """Allocate random inputs for `shape` and return a closure that runs the kernel once."""
        return self.build_fn(self, shape, device, dtype, seed)


class Registry:
    """An explicit, ordered set of cases that refuses duplicate names."""

    def __init__(self, cases: Iterable[Case] = ()) -> None:
        self._cases: dict[str, Case] = {}
        for case in cases:
            self.register(case)

    def register(self, case: Case) -> None:
        for trait, value, allowed in (("phase", case.phase, PHASES), ("family", case.family, FAMILIES),
                                      ("layout", case.layout, LAYOUTS), ("offload", case.offload, OFFLOAD_MODES),
                                      ("op", case.op, OPS)):
            if value not in allowed:
                raise ValueError(f"case {case.name}: {trait} must be one of {allowed}, got {value!r}")
        if case.name in self._cases:
            raise ValueError(f"case {case.name!r} is already registered")
        self._cases[case.name] = case

    def get(self, name: str) -> Case:
        try:
            return self._cases[name]
        except KeyError:
            raise KeyError(f"unknown case {name!r}; choose one of: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._cases)

    def __contains__(self, name: object) -> bool:
        return name in self._cases

    def __iter__(self):
        return iter(self._cases.values())
