"""Kernels whose energy the harness measures: attention, the linear layers and whole decoder layers
(pure compute, no measurement)."""
from kernels.api import decode, decode_impls, prefill, prefill_impls
from kernels.cases import REGISTRY
from kernels.registry import Case, Registry, Shape

__all__ = ["prefill", "decode", "prefill_impls", "decode_impls", "REGISTRY", "Case", "Registry", "Shape"]
