"""codecarbon's bundled CPU TDP table (`codecarbon/data/hardware/cpu_power.csv`) and a lookup of
a part in it, shared by the measured host model (`bench.measure`) and the planner's host power
model (`bench.carbon`)."""
from __future__ import annotations

import importlib.util
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_NOISE = re.compile(r"\((R|TM|tm|r)\)|\bCPU\b|\bProcessor\b|@\s*[\d.]+\s*GHz|\b\d+-Core\b", re.IGNORECASE)


def tdp_table() -> pd.DataFrame:
    """codecarbon's bundled CPU table: `Name`, `TDP` (watts)."""
    # Locate the package without importing it: codecarbon's import pulls in its whole tracker.
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("codecarbon is not installed; its CPU table is needed for the host model")
    path = Path(spec.submodule_search_locations[0]) / "data" / "hardware" / "cpu_power.csv"
    table = pd.read_csv(path, dtype=str)
    # A few rows hold ranges such as "27.29.5" that are not one number: drop them.
    table["TDP"] = pd.to_numeric(table["TDP"], errors="coerce")
    return table.dropna(subset=["TDP"]).reset_index(drop=True)


def normalise(cpu_name: str) -> str:
    return " ".join(_NOISE.sub(" ", cpu_name).split())


@dataclass(frozen=True)
class TdpMatch:
    tdp_w: float
    matched: str
    how: str  # "exact", "contains", "family_median(n=...)"


def lookup_tdp(cpu_name: str, table: pd.DataFrame) -> TdpMatch | None:
    """TDP of `cpu_name`: exact match, else the longest table name inside it, else the median of
    the family whose names start with it (e.g. a VM that only says "AMD EPYC")."""
    wanted = normalise(cpu_name)
    if not wanted:
        return None
    names = table["Name"].astype(str)
    normalised = names.map(normalise)
    exact = table[normalised == wanted]
    if len(exact):
        return TdpMatch(float(exact["TDP"].iloc[0]), str(exact["Name"].iloc[0]), "exact")
    padded = f" {wanted} "
    inside = [(len(n), i) for i, n in enumerate(normalised) if n and f" {n} " in padded]
    if inside:
        i = max(inside)[1]
        return TdpMatch(float(table["TDP"].iloc[i]), str(names.iloc[i]), "contains")
    family = table[normalised.str.startswith(wanted + " ")]
    if len(family):
        return TdpMatch(float(statistics.median(family["TDP"])), f"{wanted} *", f"family_median(n={len(family)})")
    return None


