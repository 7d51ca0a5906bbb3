"""Readable table of measured points (what `python -m bench` prints at the end)."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, scale: float = 1.0, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:.{digits}g}"


def _length(row: Mapping[str, Any]) -> str:
    return f"N={row['seq_len']}" if row["phase"] == "prefill" else f"L={row['context_len']}"


def _setting(row: Mapping[str, Any]) -> str:
    """Offload parameters and locked clocks, where a point has them."""
    parts = []
    for key, label in (("offload_fraction", "f"), ("offload_threads", "threads"), ("offload_chunks", "chunks"),
                       ("clocks_sm_mhz_requested", "sm MHz")):
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            parts.append(f"{label}={value:g}" if isinstance(value, float) else f"{label}={value}")
    return " ".join(parts)


def point_label(row: Mapping[str, Any]) -> str:
    """One line naming a point: kernel, batch, length and any setting."""
    return " ".join(x for x in (row["kernel"], f"B={row['batch_size']}", _length(row), _setting(row)) if x)


def _methods(row: Mapping[str, Any]) -> str:
    """Short form of each domain's method; the model's inputs are printed under the table."""
    domains = [d for d in str(row.get("energy_domains", "")).split("+") if d]
    short = [f"{d}={'model' if str(row[f'{d}_method']).startswith('model:') else row[f'{d}_method']}" for d in domains]
    return ", ".join(short) or "none"


def first(row: Mapping[str, Any], *keys: str) -> Any:
    """The first of `keys` the row has a value for (older points carry older column names)."""
    for key in keys:
        value = row.get(key)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            return value
    return None


def _host_label(row: Mapping[str, Any]) -> str:
    method = str(row.get("host_energy_method", ""))
    return " (model)" if "model:" in method else ""


def table(rows: Iterable[Mapping[str, Any]], title: str = "measured points") -> Table:
    """GPU and host energy apart; `measured` sums the measured domains only (a modelled host is
    never in it)."""
    out = Table(title=title, title_justify="left")
    for name, justify in [
        ("kernel", "left"), ("setting", "left"), ("device", "left"), ("B", "right"), ("len", "right"),
        ("ms/call", "right"), ("cv", "right"), ("tokens/s", "right"),
        ("GPU mJ/token", "right"), ("host mJ/token", "right"), ("measured mJ/token", "right"),
        ("energy cv", "right"), ("quality", "left"), ("energy method", "left"),
    ]:
        out.add_column(name, justify=justify)
    for row in rows:
        energy_cv = first(row, "measured_energy_per_call_j_cv", "energy_per_call_j_incl_model_cv", "energy_per_call_j_cv")
        out.add_row(
            row["kernel"],
            _setting(row),
            f"{row['device']} {row['dtype']}",
            str(row["batch_size"]),
            _length(row),
            _fmt(row["time_per_call_s"], 1e3),
            f"{_fmt(row['time_per_call_s_cv'], 100, 2)}%",
            _fmt(row["tokens_per_s"]),
            _fmt(row.get("gpu_energy_per_token_j"), 1e3),
            _fmt(first(row, "host_energy_per_token_j"), 1e3) + _host_label(row),
            _fmt(first(row, "measured_energy_per_token_j"), 1e3),
            f"{_fmt(energy_cv, 100, 2)}%",
            str(row.get("quality", "-")),
            _methods(row),
        )
    return out


def print_table(rows: list[Mapping[str, Any]], title: str = "measured points") -> None:
    console = Console(width=max(Console().width, 200))
    console.print(table(rows, title))
    notes = sorted({f"{d}: {row.get(f'{d}_method')} ({row.get(f'{d}_method_detail', '')})" for row in rows
                    for d in str(row.get("energy_domains", "")).split("+") if d})
    for note in notes:
        console.print(f"  {note}", highlight=False)
