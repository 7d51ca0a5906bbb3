"""`grid=csv grid.path=...`: a user's series with configurable columns, units and time zone."""
from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from bench.carbon.inputs.grid.intensity import MAX_PLAUSIBLE_G_PER_KWH, GridError, Intensity

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


OFFSET = r"(?:Z|[+-]\d\d:?\d\d)\s*$"  # a time that carries its zone: ISO 8601's Z or +hh:mm


def _utc_times(column: pd.Series, timezone: str | None, path: Path) -> pd.DatetimeIndex:
    """A time column in UTC. Times with an offset carry their own zone; the others are in
    `timezone` (default UTC), localised as one sequence in time order so that the hour a clock
    change repeats is told apart by its order (first the summer one; a file newest-first is read
    backwards). An hour the clock change skips, or a repeated one whose order cannot tell, is
    refused rather than guessed. Numbers are refused: epoch times carry no unit."""
    if pd.api.types.is_numeric_dtype(column):
        raise GridError(f"grid file {path}: column {column.name!r} holds numbers; give datetimes (e.g. "
                        f"2022-01-01 00:00, with or without an offset), not epoch numbers")
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise GridError(f"grid.timezone={timezone!r} is not a time zone (e.g. America/New_York, Europe/Paris)") from None
    text = column.astype(str).reset_index(drop=True)
    offset = text.str.contains(OFFSET, regex=True).to_numpy()
    parts = []  # (row positions, their UTC times)
    if offset.any():
        parts.append((text.index[offset], pd.DatetimeIndex(pd.to_datetime(text[offset], utc=True, errors="coerce",
                                                                          format="mixed"))))
    if (~offset).any():
        naive = pd.DatetimeIndex(pd.to_datetime(text[~offset], errors="coerce", format="mixed"))
        if naive.isna().any():
            bad = int(naive.isna().sum())
            raise GridError(f"grid file {path}: {bad} unparseable times in column {column.name!r}")
        try:
            if naive.is_monotonic_decreasing and not naive.is_monotonic_increasing:
                local = naive[::-1].tz_localize(zone, ambiguous="infer")[::-1]
            elif naive.is_monotonic_increasing:
                local = naive.tz_localize(zone, ambiguous="infer")
            else:  # out of order: only where no hour is ambiguous
                local = naive.tz_localize(zone, ambiguous="raise")
        except ValueError as err:  # pandas' ambiguous and nonexistent time errors are ValueErrors
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise GridError(f"grid file {path}: local times that grid.timezone={timezone}'s clock changes make "
                            f"ambiguous or nonexistent ({first_line}); give the times in UTC or with their offset, "
                            f"in time order") from None
        parts.append((text.index[~offset], local.tz_convert("UTC")))
    if len(parts) == 1:
        utc = parts[0][1]
    else:  # both kinds: back in the file's row order
        both = pd.concat([pd.Series(times, index=rows) for rows, times in parts])
        utc = pd.DatetimeIndex(both.sort_index())
    if utc.isna().any():
        raise GridError(f"grid file {path}: {int(utc.isna().sum())} unparseable times in column {column.name!r}")
    return utc


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
    times = _utc_times(df[time_column], timezone, path)
    values = _numbers(df[intensity_column], intensity_column, path) * UNITS[units]
    series = pd.Series(values.to_numpy(), index=times).sort_index(kind="stable")
    repeated = series.index.duplicated(keep=False)
    if repeated.any():  # the same hour twice: kept once if the rows agree, refused if they do not
        differ = series[repeated].groupby(level=0).nunique() > 1
        if differ.any():
            when = differ[differ].index[0]
            raise GridError(f"grid file {path}: {int(differ.sum())} time(s) given twice with different values, e.g. "
                            f"{when} ({', '.join(f'{v:g}' for v in series[when])}); keep one row per time")
        series = series.groupby(level=0).first()  # (the value, where one of the rows is empty)
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
