"""Grid carbon intensity as an hourly series (gCO2e per kWh).

Sources: a constant; a country's annual average from codecarbon's bundled energy-mix table
(offline); one of the six shipped 2022 US hourly traces (`grid=ciso_2022`, ...); or a user's
CSV (`grid.path`, column names and units configurable). Gaps are filled by linear
interpolation in time and counted; timestamps are parsed as UTC unless the CSV says otherwise
(or `grid.timezone` names the zone of naive timestamps); values outside what any grid emits
are refused as wrong units.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent / "data"
TRACES = {f"{ba}_2022": DATA / f"grid_{ba}_2022.csv" for ba in ("bpat", "ciso", "erco", "miso", "nyis", "pjm")}
# Conversions to g/kWh. kg/MWh is numerically the same; lb/MWh is what US EIA/eGRID publish.
UNITS = {"g_per_kwh": 1.0, "kg_per_mwh": 1.0, "lb_per_mwh": 0.45359237, "t_per_mwh": 1000.0, "kg_per_kwh": 1000.0}
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

    def window(self, start: str | pd.Timestamp | None, hours: int) -> "Intensity":
        """`hours` values from `start` (UTC; None: the series start). A constant series repeats."""
        if len(self.g_per_kwh) == 1:
            return Intensity(np.full(hours, self.g_per_kwh[0]), self.start_utc, self.label, self.gaps_filled)
        first = 0 if start is None else int((_utc(pd.Timestamp(start)) - self.start_utc) / pd.Timedelta(hours=1))
        if first < 0 or first + hours > len(self.g_per_kwh):
            end = self.start_utc + pd.Timedelta(hours=len(self.g_per_kwh))
            raise GridError(f"grid {self.label} covers {self.start_utc} to {end}; {hours} h from {start} is outside it")
        return Intensity(self.g_per_kwh[first:first + hours].copy(), self.start_utc + pd.Timedelta(hours=first),
                         self.label, self.gaps_filled)


def _utc(ts: pd.Timestamp, tz: str | None = None) -> pd.Timestamp:
    if ts.tzinfo is None:
        return ts.tz_localize(tz or "UTC").tz_convert("UTC")
    return ts.tz_convert("UTC")


def constant(g_per_kwh: float) -> Intensity:
    if not 0 <= g_per_kwh <= MAX_PLAUSIBLE_G_PER_KWH:
        raise GridError(f"grid.intensity_g_per_kwh={g_per_kwh} is not a plausible grid intensity (0-1800 g/kWh)")
    return Intensity(np.array([float(g_per_kwh)]), pd.Timestamp("2022-01-01", tz="UTC"), f"constant {g_per_kwh:g} g/kWh")


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
                     f"{row['country_name']} annual average {row.get('year', '')} (codecarbon global_energy_mix)")


def from_csv(path: str | Path, time_column: str = "timestamp", intensity_column: str = "intensity_g_per_kwh",
             units: str = "g_per_kwh", timezone: str | None = None, label: str | None = None,
             max_gap_h: int = 24) -> Intensity:
    """An hourly (or finer/coarser, resampled to hourly means) series from a CSV file. Gaps up to
    `max_gap_h` hours are interpolated and counted; a longer one is refused (interpolating a
    day or more would invent the very pattern time shifting exploits)."""
    path = Path(path)
    if units not in UNITS:
        raise GridError(f"grid.units={units!r}: choose one of {', '.join(UNITS)}")
    if not path.is_file():
        raise GridError(f"grid.path={str(path)!r} is not a file")
    df = pd.read_csv(path)
    missing = [c for c in (time_column, intensity_column) if c not in df.columns]
    if missing:
        raise GridError(f"grid file {path} lacks column(s) {missing}; it has {list(df.columns)} "
                        f"(set grid.time_column / grid.intensity_column)")
    times = pd.to_datetime(df[time_column], utc=False, errors="coerce", format="mixed")
    if times.isna().any():
        raise GridError(f"grid file {path}: {int(times.isna().sum())} unparseable times in column {time_column!r}")
    times = pd.DatetimeIndex([_utc(t, timezone) for t in times])
    values = pd.to_numeric(df[intensity_column], errors="coerce") * UNITS[units]
    series = pd.Series(values.to_numpy(), index=times).sort_index()
    series = series[~series.index.duplicated(keep="first")]
    bad = series[(series < 0) | (series > MAX_PLAUSIBLE_G_PER_KWH)]
    if len(bad):
        raise GridError(f"grid file {path}: {len(bad)} values outside 0-{MAX_PLAUSIBLE_G_PER_KWH:g} g/kWh after "
                        f"converting from {units} (e.g. {bad.iloc[0]:g} at {bad.index[0]}); wrong grid.units?")
    hourly = series.resample("1h").mean()
    missing = hourly.isna()
    gaps = int(missing.sum())
    if gaps == len(hourly):
        raise GridError(f"grid file {path} has no values in column {intensity_column!r}")
    runs = (missing != missing.shift()).cumsum()[missing]
    if len(runs) and runs.value_counts().max() > max_gap_h:
        longest = runs.value_counts().idxmax()
        first = runs[runs == longest].index[0]
        raise GridError(f"grid file {path}: {int(runs.value_counts().max())} hours without values from {first} "
                        f"(more than grid.max_gap_h={max_gap_h}); fill them or raise the limit")
    filled = hourly.interpolate(method="time", limit_direction="both")
    return Intensity(filled.to_numpy(float), filled.index[0], label or path.name, gaps)


def trace(name: str) -> Intensity:
    if name not in TRACES:
        raise GridError(f"grid={name!r} unknown; shipped hourly traces: {', '.join(TRACES)}")
    return from_csv(TRACES[name], label=f"{name.split('_')[0].upper()} 2022 hourly (EIA via dc-rl)")


def from_config(g, hours: int) -> Intensity:
    """The `hours` of intensity a `grid` config (bench.config.GridConf) names."""
    if g.source == "constant":
        series = constant(g.intensity_g_per_kwh)
    elif g.source == "country":
        series = country(g.country)
    elif g.source == "csv":
        if not g.path:
            raise GridError("grid=csv needs grid.path=<file>")
        series = from_csv(g.path, g.time_column, g.intensity_column, g.units, g.timezone, max_gap_h=g.max_gap_h)
    else:
        series = trace(g.source)
    return series.window(g.start, hours)
