"""Benchmark cases: what a kernel computes (flops, minimum bytes, tokens) and how to build a
no-argument closure over preallocated inputs, so allocation stays outside measured windows."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Iterable

import torch

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class Shape:
    """Problem size of one benchmark point.

    `seq_len` is the prefill query (= key) length; `context_len` the decode KV length of every
    request; `page_size` applies to paged decode caches only, the `offload_*` fields to the
    CPU-offload decode cases only (share of each request's cache in host memory, host threads,
    request groups streamed per step).
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


# Shape fields that define a point of each phase; the rest do not change what is computed.
_PHASE_FIELDS = {
    "prefill": ("batch_size", "heads", "kv_heads", "head_dim", "seq_len", "causal"),
    "decode": ("batch_size", "heads", "kv_heads", "head_dim", "context_len"),
}


def causal_pairs(n: int, m: int) -> int:
    """Query-key pairs left by an end-aligned causal mask: query i sees `i + m - n + 1` keys."""
    return n * (m - n + 1) + n * (n - 1) // 2


@dataclass(frozen=True)
class Case:
    """One benchmark case: a phase, an implementation, and (for decode) the cache layout."""

    name: str
    phase: str
    impl: str
    build_fn: Callable[["Case", Shape, torch.device, torch.dtype, int], Callable[[], torch.Tensor]]
    paged: bool = False
    devices: tuple[str, ...] = ("cpu", "cuda")
    check: Callable[[torch.device], str | None] | None = None  # why it cannot run there, if it cannot
    extra_fields: tuple[str, ...] = ()  # shape fields this case uses beyond its phase's
    device_impl: str | None = None  # offload cases: what attends the part on the device

    def shape_fields(self, shape: Shape) -> dict[str, object]:
        """The shape fields that identify a point of this case (used in the result key)."""
        keys = _PHASE_FIELDS[self.phase] + (("page_size",) if self.paged else ()) + self.extra_fields
        return {k: getattr(shape, k) for k in keys}

    def flops(self, shape: Shape) -> float:
        """Floating-point operations of one call: 4 per (query, key, head_dim) pair (QK^T and PV)."""
        b, hq, d = shape.batch_size, shape.heads, shape.head_dim
        if self.phase == "prefill":
            n = shape.seq_len
            pairs = causal_pairs(n, n) if shape.causal else n * n
            return 4.0 * b * hq * d * pairs
        return 4.0 * b * hq * d * shape.context_len

    def min_bytes(self, shape: Shape, dtype: torch.dtype) -> float:
        """Fewest bytes one call must move: every input read once, the output written once."""
        e = torch.empty((), dtype=dtype).element_size()
        b, hq, hkv, d = shape.batch_size, shape.heads, shape.kv_heads, shape.head_dim
        if self.phase == "prefill":
            n = shape.seq_len
            return float(e * d * b * (2 * hq * n + 2 * hkv * n))
        kv = 2 * b * hkv * shape.context_len * d * e
        q_and_o = 2 * b * hq * d * e
        index_bytes = b * 4 + (b * math.ceil(shape.context_len / shape.page_size) * 4 if self.paged else 0)
        return float(kv + q_and_o + index_bytes)

    def tokens(self, shape: Shape) -> int:
        """Tokens one call processes: the whole prompt in prefill, one per request in decode."""
        if self.phase == "prefill":
            return shape.batch_size * shape.seq_len
        return shape.batch_size

    def unsupported_reason(self, device: torch.device) -> str | None:
        if device.type not in self.devices:
            return f"case {self.name} runs on {', '.join(self.devices)}, not {device.type}"
        return self.check(device) if self.check else None

    def build(self, shape: Shape, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Callable[[], torch.Tensor]:
        """Allocate random inputs for `shape` and return a closure that runs the kernel once."""
        return self.build_fn(self, shape, device, dtype, seed)


class Registry:
    """An explicit, ordered set of cases that refuses duplicate names."""

    def __init__(self, cases: Iterable[Case] = ()) -> None:
        self._cases: dict[str, Case] = {}
        for case in cases:
            self.register(case)

    def register(self, case: Case) -> None:
        if case.phase not in PHASES:
            raise ValueError(f"case {case.name}: phase must be one of {PHASES}, got {case.phase!r}")
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


def shape_field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Shape))
