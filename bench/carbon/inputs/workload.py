"""Request traces: arrival time, prompt tokens and output tokens per request.

The default is the Azure LLM inference trace 2023 (conversation, one hour, 19,366 requests;
CC-BY-4.0, "Azure LLM inference trace 2023, Microsoft"), shipped in `data/`. Any CSV with those
three columns works (names configurable); times may be timestamps or seconds. A share of the
requests is marked offline (batch work with a deadline, EcoServe's default 55%), chosen at random
with a seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

DEFAULT_TRACE = Path(__file__).resolve().parents[1] / "data" / "azure_conv_2023.csv"


@dataclass
class WorkloadConf:
    """`workload.*`: the request trace and its offline share."""

    path: Optional[str] = None  # default: the shipped Azure conversation trace
    time_column: str = "TIMESTAMP"
    prompt_column: str = "ContextTokens"
    output_column: str = "GeneratedTokens"
    offline_share: float = 0.55  # EcoServe: offline batch work is up to 55% of capacity
    deadline_h: int = 24
    seed: int = 0


class WorkloadError(ValueError):
    """A trace that cannot be used; the message names the column or row."""


@dataclass(frozen=True)
class Workload:
    arrival_s: np.ndarray  # seconds from the first request
    prompt: np.ndarray
    output: np.ndarray
    offline: np.ndarray  # bool
    label: str

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self.arrival_s) else 0.0

    def subset(self, mask: np.ndarray) -> "Workload":
        return Workload(self.arrival_s[mask], self.prompt[mask], self.output[mask], self.offline[mask], self.label)


def from_config(w: WorkloadConf) -> "Workload":
    return load(w.path, w.time_column, w.prompt_column, w.output_column, w.offline_share, w.seed)


def load(path: str | Path | None = None, time_column: str = "TIMESTAMP", prompt_column: str = "ContextTokens",
         output_column: str = "GeneratedTokens", offline_share: float = 0.55, seed: int = 0) -> Workload:
    path = Path(path) if path else DEFAULT_TRACE
    if not path.is_file():
        raise WorkloadError(f"workload.path={str(path)!r} is not a file")
    if not 0.0 <= offline_share < 1.0:
        raise WorkloadError(f"workload.offline_share={offline_share}: must be in [0, 1)")
    df = pd.read_csv(path)
    missing = [c for c in (time_column, prompt_column, output_column) if c not in df.columns]
    if missing:
        raise WorkloadError(f"trace {path.name} lacks column(s) {missing}; it has {list(df.columns)} "
                            f"(set workload.time_column / prompt_column / output_column)")
    if df.empty:
        raise WorkloadError(f"trace {path.name} has no requests")
    times = df[time_column]
    if pd.api.types.is_numeric_dtype(times):
        seconds = times.to_numpy(float)
    else:
        parsed = pd.to_datetime(times, errors="coerce", format="mixed")
        if parsed.isna().any():
            raise WorkloadError(f"trace {path.name}: unparseable time in column {time_column!r} at row "
                                f"{int(np.argmax(parsed.isna().to_numpy()))}")
        seconds = (parsed - parsed.iloc[0]).dt.total_seconds().to_numpy()
    if np.any(np.diff(seconds) < 0):
        row = int(np.argmax(np.diff(seconds) < 0)) + 1
        raise WorkloadError(f"trace {path.name}: arrival times are not sorted (row {row} is earlier than row {row - 1})")
    tokens = {}
    for col in (prompt_column, output_column):
        values = pd.to_numeric(df[col], errors="coerce")
        if values.isna().any() or (values < 0).any():
            row = int(np.argmax((values.isna() | (values < 0)).to_numpy()))
            raise WorkloadError(f"trace {path.name}: column {col!r} has a negative or missing token count at row {row}")
        tokens[col] = values.to_numpy(int)
    rng = np.random.default_rng(seed)
    offline = rng.random(len(df)) < offline_share
    return Workload(seconds - seconds[0], tokens[prompt_column], np.maximum(tokens[output_column], 1), offline,
                    f"{path.name} ({len(df)} requests, {offline_share:.0%} offline)")
