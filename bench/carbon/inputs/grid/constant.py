"""`grid=constant`: one intensity for every hour."""
from __future__ import annotations

import numpy as np
import pandas as pd

from bench.carbon.inputs.grid.intensity import MAX_PLAUSIBLE_G_PER_KWH, GridError, Intensity


def constant(g_per_kwh: float) -> Intensity:
    if not 0 <= g_per_kwh <= MAX_PLAUSIBLE_G_PER_KWH:
        raise GridError(f"grid.intensity_g_per_kwh={g_per_kwh} is not a plausible grid intensity (0-1800 g/kWh)")
    return Intensity(np.array([float(g_per_kwh)]), pd.Timestamp("2022-01-01", tz="UTC"), f"constant {g_per_kwh:g} g/kWh",
                     repeats=True)
