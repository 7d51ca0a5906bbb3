"""An hourly grid carbon-intensity series (gCO2e per kWh) and the error every grid source raises."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

MAX_PLAUSIBLE_G_PER_KWH = 1800.0  # above lignite's ~1,100-1,200 with margin


class GridError(ValueError):
    """A grid source that cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class Intensity:
    """Hourly intensity from `start_utc`; `label` says where it came from."""

    g_per_kwh: np.ndarray
    start_utc: pd.Timestamp
    label: str
    gaps_filled: int = 0
    scope: str = "unstated"  # what the series counts: direct (combustion) or lifecycle emissions
    repeats: bool = False  # one value for every hour (a constant or a country's annual mean), not a series

    def window(self, start: str | pd.Timestamp | None, hours: int) -> "Intensity":
        """`hours` values from `start` (UTC; None: the series start). A constant series repeats."""
        if self.repeats:  # (a series of one hour, from a csv, is a series: it covers one hour, not every)
            return Intensity(np.full(hours, self.g_per_kwh[0]), self.start_utc, self.label, self.gaps_filled, self.scope,
                             True)
        first = 0 if start is None else int((to_utc(pd.Timestamp(start)) - self.start_utc) / pd.Timedelta(hours=1))
        if first < 0 or first + hours > len(self.g_per_kwh):
            end = self.start_utc + pd.Timedelta(hours=len(self.g_per_kwh))
            raise GridError(f"grid {self.label} covers {self.start_utc} to {end}; {hours} h from "
                            f"{self.start_utc if start is None else start} is outside it")
        return Intensity(self.g_per_kwh[first:first + hours].copy(), self.start_utc + pd.Timedelta(hours=first),
                         self.label, self.gaps_filled, self.scope)


def to_utc(ts: pd.Timestamp, tz: str | None = None) -> pd.Timestamp:
    if ts.tzinfo is None:
        return ts.tz_localize(tz or "UTC").tz_convert("UTC")
    return ts.tz_convert("UTC")
