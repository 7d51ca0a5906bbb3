"""`grid=<ba>_2022`: the six shipped 2022 US hourly traces (EIA via dc-rl), `bench/carbon/data`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.carbon.inputs.grid.csv_file import from_csv
from bench.carbon.inputs.grid.intensity import GridError, Intensity

DATA = Path(__file__).resolve().parents[2] / "data"
TRACES = {f"{ba}_2022": DATA / f"grid_{ba}_2022.csv" for ba in ("bpat", "ciso", "erco", "miso", "nyis", "pjm")}


def trace(name: str) -> Intensity:
    if name not in TRACES:
        raise GridError(f"grid={name!r} unknown; shipped hourly traces: {', '.join(TRACES)}")
    series = from_csv(TRACES[name], label=f"{name.split('_')[0].upper()} 2022 hourly (EIA via dc-rl)")
    # SOURCES.md: `avg_CI` is the generation-weighted average of direct emissions.
    return dataclasses.replace(series, scope="direct emissions (generation-weighted, combustion only; no lifecycle share)")
