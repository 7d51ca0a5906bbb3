"""Grid carbon intensity as an hourly series (gCO2e per kWh), from one registry of sources, each
its own module: `constant`, `country` (codecarbon's bundled annual averages, offline), `csv` (a
user's file: columns, units and time zone configurable) and the six shipped 2022 US hourly
traces (`<ba>_2022`). Gaps are filled by linear interpolation in time and counted; timestamps
are parsed as UTC unless the CSV says otherwise (or `grid.timezone` names the zone of naive
timestamps); values outside what any grid emits are refused as wrong units.

What a series counts (its scope: direct, combustion-only emissions, or lifecycle emissions) is said
with it: the shipped traces count direct emissions; for the others `grid.scope` states it, and a
csv without one is read from its intensity column's name where that says it (Electricity Maps'
exports name theirs "... (direct)" and "... (LCA)"); otherwise it is unstated, and the report says so.

Adding a source is one entry in `SOURCES` (and a `conf/grid/<name>.yaml` to select it).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Callable, Optional

from bench.carbon.inputs.grid.constant import constant
from bench.carbon.inputs.grid.country import country
from bench.carbon.inputs.grid.csv_file import UNITS, from_csv
from bench.carbon.inputs.grid.intensity import MAX_PLAUSIBLE_G_PER_KWH, GridError, Intensity
from bench.carbon.inputs.grid.shipped import TRACES, trace

__all__ = ["GridConf", "GridError", "GridSource", "Intensity", "MAX_PLAUSIBLE_G_PER_KWH", "SCOPES", "SOURCES", "TRACES",
           "UNITS", "constant", "country", "from_config", "from_csv", "scope_problem", "trace"]

# What a series may be said to count (`grid.scope`), as the report words it.
SCOPES = {"direct": "direct emissions (combustion only; no lifecycle share)",
          "lifecycle": "lifecycle emissions (combustion plus the fuel chain and the plants' construction)"}
SCOPE_STATED = ("constant", "country", "csv")  # sources whose scope `grid.scope` states (the shipped traces state theirs)


@dataclass
class GridConf:
    """`grid.*`: which source, and its settings."""

    source: str = "ciso_2022"  # <ba>_2022 (shipped hourly traces) | constant | country | csv
    intensity_g_per_kwh: float = 261.0  # constant
    country: str = "USA"  # country: ISO 3166 alpha-3
    path: Optional[str] = None  # csv
    time_column: str = "timestamp"
    intensity_column: str = "intensity_g_per_kwh"
    units: str = "g_per_kwh"
    timezone: Optional[str] = None  # zone of naive timestamps in the csv (default UTC)
    max_gap_h: int = 24  # longer runs of missing hours are refused, shorter ones interpolated
    start: Optional[str] = None  # first hour of the planning period (default: the series' first)
    # What the series counts, direct | lifecycle (constant, country, csv; a csv without it: its
    # intensity column's name where that says "direct" or "LCA"/"lifecycle"; else unstated).
    scope: Optional[str] = None


@dataclass(frozen=True)
class GridSource:
    name: str
    describes: str
    load: Callable[[GridConf], Intensity]


def _csv(g: GridConf) -> Intensity:
    if not g.path:
        raise GridError("grid=csv needs grid.path=<file>")
    return from_csv(g.path, g.time_column, g.intensity_column, g.units, g.timezone, max_gap_h=g.max_gap_h)


SOURCES: dict[str, GridSource] = {s.name: s for s in (
    GridSource("constant", "one intensity for every hour (grid.intensity_g_per_kwh)",
               lambda g: constant(g.intensity_g_per_kwh)),
    GridSource("country", "a country's annual average, codecarbon's bundled table (grid.country)",
               lambda g: country(g.country)),
    GridSource("csv", "your own series (grid.path, columns, units, time zone)", _csv),
    *(GridSource(name, f"shipped {name.split('_')[0].upper()} 2022 hourly trace", lambda g, n=name: trace(n))
      for name in TRACES),
)}


def from_config(g: GridConf, hours: int) -> Intensity:
    """The `hours` of intensity a `grid` config names."""
    source = SOURCES.get(g.source)
    if source is None:
        raise GridError(f"grid={g.source!r} unknown; shipped hourly traces: {', '.join(TRACES)}; "
                        f"other sources: constant, country, csv")
    return with_scope(source.load(g).window(g.start, hours), g)


def scope_problem(g: GridConf) -> str | None:
    """Why `grid.scope` cannot be taken as given (None: it can, or it is unset). The one rule, read
    by the config's validation (before any work) and by `with_scope`."""
    if g.scope is None:
        return None
    if g.scope not in SCOPES:
        return f"choose one of {', '.join(SCOPES)}"
    if g.source in SOURCES and g.source not in SCOPE_STATED:  # (an unknown source is refused as itself)
        return f"applies to grid={', '.join(SCOPE_STATED)} (the shipped {g.source} series counts direct emissions)"
    return None


def with_scope(series: Intensity, g: GridConf) -> Intensity:
    """`series` saying what it counts: as `grid.scope` states it, or for a csv as its intensity
    column's name says (where it says one of them only)."""
    problem = scope_problem(g)
    if problem:
        raise GridError(f"grid.scope={g.scope!r}: {problem}")
    if g.scope is not None:
        return dataclasses.replace(series, scope=f"{SCOPES[g.scope]} (as grid.scope states)")
    if g.source == "csv":
        name = g.intensity_column.lower()
        # Whole words, "_" and "-" separating them as spaces do ("indirect" is not "direct").
        said = [scope for scope, pattern in (("direct", r"(?<![a-z])direct(?![a-z])"),
                                             ("lifecycle", r"(?<![a-z])(lca|life[ _-]?cycle)(?![a-z])"))
                if re.search(pattern, name)]
        if len(said) == 1:
            return dataclasses.replace(series, scope=f"{SCOPES[said[0]]} (read from its column's name, "
                                                     f"{g.intensity_column!r}; `grid.scope` overrides)")
    return series
