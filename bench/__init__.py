"""Energy and carbon of LLM inference, kernel by kernel: measurement harness.

`bench.measure_callable(fn, ...)` measures any callable by the harness's protocol (imported on
first use, so `import bench` stays light).
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "measure_callable":
        from bench.measure.callable import measure_callable

        return measure_callable
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
