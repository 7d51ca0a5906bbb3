"""`grid=csv grid.path=...`: a user's series with configurable columns, units and time zone."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.carbon.inputs.grid.intensity import MAX_PLAUSIBLE_G_PER_KWH, GridError, Intensity, to_utc

# Conversions to g/kWh. kg/MWh is numerically the same; lb/MWh is what US EIA/eGRID publish.
UNITS = {"g_per_kwh": 1.0, "kg_per_mwh": 1.0, "lb_per_mwh": 0.45359237, "t_per_mwh": 1000.0, "kg_per_kwh": 1000.0}


def _numbers(column: pd.Series, name: str, path: Path) -> pd.Series:
    """The column as numbers, empty cells as gaps; text (a unit, "n/a", a decimal comma) is
    refused, naming its first row (data rows counted from 0), rather than interpolated over."""
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    text = column.astype("string").str.strip().replace("", pd.NA)
    values = pd.to_numeric(text, errors="coerce")
    bad = (values.isna() & text.notna()).to_numpy(bool)
    if bad.any():
        row = int(bad.argmax())
        raise GridError(f"grid file {path}: column {name!r} has text {column.iloc[row]!r} at row {row}; values "
                        f"must be numbers (leave a cell empty for a gap)")
    return values.astype(float)


def _utc_index(times: pd.Series, timezone: str | None, path: Path) -> pd.DatetimeIndex:
    """The times in UTC. Naive ones are in `timezone` (default UTC), localised as one sequence so
    that the hour a clock change repeats is told apart by its order (first the summer one); an
    hour the clock change skips, or a repeat out of order, is refused rather than guessed."""
    try:
        if all(t.tzinfo is None for t in times):
            return pd.DatetimeIndex(times).tz_localize(timezone or "UTC", ambiguous="infer").tz_convert("UTC")
        return pd.DatetimeIndex([to_utc(t, timezone) for t in times])
    except ValueError as err:  # pandas' ambiguous and nonexistent time errors are ValueErrors
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise GridError(f"grid file {path}: local times that grid.timezone={timezone}'s clock changes make ambiguous "
                        f"or nonexistent ({first_line}); give the times in UTC or with their offset") from None


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
    try:
        # Only empty cells are missing: pandas would also read "n/a", "NA", "null" as gaps, which
        # then get interpolated; text in the value column is refused below instead.
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise GridError(f"grid file {path} is empty") from None
    except (ValueError, OSError) as err:  # parser errors, undecodable bytes
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise GridError(f"grid file {path} is not readable as CSV: {first_line}") from None
    if df.empty:
        raise GridError(f"grid file {path} has a header but no rows")
    missing = [c for c in (time_column, intensity_column) if c not in df.columns]
    if missing:
        raise GridError(f"grid file {path} lacks column(s) {missing}; it has {list(df.columns)} "
                        f"(set grid.time_column / grid.intensity_column)")
    try:
        times = pd.to_datetime(df[time_column], utc=False, errors="coerce", format="mixed")
    except ValueError:  # times with and without an offset in one column: each read as it is
        times = pd.Series([pd.to_datetime(cell, errors="coerce") for cell in df[time_column]], dtype=object)
    if times.isna().any():
        raise GridError(f"grid file {path}: {int(times.isna().sum())} unparseable times in column {time_column!r}")
    times = _utc_index(times, timezone, path)
    values = _numbers(df[intensity_column], intensity_column, path) * UNITS[units]
    series = pd.Series(values.to_numpy(), index=times).sort_index(kind="stable")
    repeated = series.index.duplicated(keep=False)
    if repeated.any():  # the same hour twice: kept once if the rows agree, refused if they do not
        differ = series[repeated].groupby(level=0).nunique() > 1
        if differ.any():
            when = differ[differ].index[0]
            raise GridError(f"grid file {path}: {int(differ.sum())} time(s) given twice with different values, e.g. "
                            f"{when} ({', '.join(f'{v:g}' for v in series[when])}); keep one row per time")
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
