"""A user's case whose point at batch_size=2 cannot be measured (as when a meter keeps failing in
every try of a window): the sweep around it must go on."""
from __future__ import annotations

from bench.measure.protocol import MeasurementError
from kernels import Case
from tests.kernels.custom_case_example import build, flops, min_bytes, tokens


def build_or_fail(case, shape, device, dtype, seed):
    if shape.batch_size == 2:
        raise MeasurementError("meter fault in 3 tries of a window, last: NVMLError: Unknown Error")
    return build(case, shape, device, dtype, seed)


def make_case() -> Case:
    return Case("decode.sometimes_failing", "decode", "naive_einsum", build_or_fail, family="custom",
                flops_fn=flops, min_bytes_fn=min_bytes, tokens_fn=tokens)
