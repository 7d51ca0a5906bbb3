"""Autotuning shared by the Triton kernels: short timing runs per config.

Triton's autotuner times every config for 25 ms of warm-up and 100 ms of runs by default. The
decode kernel is tuned once per split count tried, and the speed table tunes dozens of shapes,
so that default would cost many minutes; 5 ms + 25 ms still gives the median of 8 or more
runs for any kernel under 3 ms, and the winner is confirmed by the benchmark that follows.
"""
from __future__ import annotations

import inspect
from typing import Callable

import triton
import triton.testing

WARMUP_MS, REP_MS = 5, 25


def quick_bench(kernel_call: Callable[[], object], quantiles: tuple[float, ...]) -> list[float]:
    return triton.testing.do_bench(kernel_call, warmup=WARMUP_MS, rep=REP_MS, quantiles=quantiles)


def autotune(configs: list[triton.Config], key: list[str], **kwargs: object):
    """`triton.autotune` with `quick_bench` as its timer where this Triton takes one (>= 3.2)."""
    if "do_bench" in inspect.signature(triton.autotune).parameters:
        kwargs["do_bench"] = quick_bench
    return triton.autotune(configs=configs, key=key, **kwargs)
