"""`grid=country grid.country=FRA`: a country's annual average from codecarbon's bundled
energy-mix table (offline)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bench.carbon.inputs.grid.intensity import GridError, Intensity


def country(iso3: str) -> Intensity:
    """Annual average of a country from codecarbon's bundled table (no network)."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or spec.origin is None:
        raise GridError("grid=country needs codecarbon installed (its bundled energy-mix table)")
    path = Path(spec.origin).parent / "data" / "private_infra" / "global_energy_mix.json"
    table = json.loads(path.read_text())
    if iso3 not in table:
        raise GridError(f"grid.country={iso3!r} is not in codecarbon's table; use an ISO 3166 alpha-3 code such as "
                        f"USA, FRA, SWE")
    row = table[iso3]
    return Intensity(np.array([float(row["carbon_intensity"])]), pd.Timestamp(f"{row.get('year', 2022)}-01-01", tz="UTC"),
                     f"{row['country_name']} annual average {row.get('year', '')} (codecarbon global_energy_mix)",
                     repeats=True)
