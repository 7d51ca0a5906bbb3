"""codecarbon's own estimate of a job, stored beside ours and labelled as codecarbon's.

codecarbon samples power every `measure_power_secs` and, without RAPL, models the CPU from its
TDP table; it is a cross-check of order of magnitude, not a measurement of the kernel. Our
figure for the same span (`span_energy_j`) is read with our meters around the whole job.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

J_PER_KWH = 3.6e6
G_PER_KG = 1000.0


@dataclass
class CodecarbonConf:
    """`codecarbon.*`: codecarbon's own estimate of each job, stored beside ours as a cross-check."""

    enabled: bool = False
    country: str = "USA"  # ISO 3166 alpha-3 code for its offline grid intensity


@contextlib.contextmanager
def codecarbon_span(country_iso_code: str, gpu_index: int | None) -> Iterator[dict[str, Any]]:
    """Track the body with codecarbon's offline tracker; the yielded dict is filled on exit."""
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    try:  # newer codecarbon picks outputs with output_methods (none here: its figures come back to us)
        from codecarbon import OutputMethod  # noqa: F401

        no_outputs: dict[str, Any] = {"output_methods": []}
    except ImportError:
        no_outputs = {"save_to_file": False}
    tracker = OfflineEmissionsTracker(
        country_iso_code=country_iso_code, log_level="error", measure_power_secs=1,
        tracking_mode="process", gpu_ids=[gpu_index] if gpu_index is not None else None, **no_outputs,
    )
    out: dict[str, Any] = {}
    tracker.start()
    try:
        yield out
    finally:
        emissions_kg = tracker.stop()
        data = tracker.final_emissions_data
        out.update({
            "codecarbon_energy_j": data.energy_consumed * J_PER_KWH,
            "codecarbon_cpu_energy_j": data.cpu_energy * J_PER_KWH,
            "codecarbon_gpu_energy_j": data.gpu_energy * J_PER_KWH,
            "codecarbon_ram_energy_j": data.ram_energy * J_PER_KWH,
            "codecarbon_emissions_g": (emissions_kg or 0.0) * G_PER_KG,
            "codecarbon_duration_s": data.duration,
            "codecarbon_country": country_iso_code,
            "codecarbon_cpu_model": data.cpu_model,
        })
