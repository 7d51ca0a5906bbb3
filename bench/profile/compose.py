"""A decoder layer's cost composed from its measured parts, and the check of it against the layer.

A layer case declares its parts (`kernels.Case.parts`): the linear projections and the attention
case it runs one after another. Composed, a layer point costs the sum of its parts' costs plus an
overhead:
- a part measured at the layer point's shape (same case, shape fields and dtype): that point's
  measured time and energy (source `measured:<case>`);
- a part not measured there: a linear projection from the `linear_time_roofline` of its op
  (`linear.qkv`, ...), fitted over the points of both phases of that projection, its energy from
  the `linear_energy` roofline of the op at that predicted time; attention from its case's
  `time_roofline` and `energy_per_case` fits;
- the overhead, what the parts leave out (`bench.profile.overhead`: a fixed cost per call, the
  elementwise ops per token x hidden and, where the data support it, the KV cache read cold per
  element), fitted per layer case on the residuals (measured layer minus its parts), weighted by
  1 / the layer's measured value so each point counts by its relative error.

The check (`check`) predicts each measured layer point with the overhead fitted on the other
points of its case (leave one out), so the errors it reports are out of sample. It reports the
same points composed as a serving step composes a shape no one measured, too: every part from its
fit (`*_fit_parts` columns), plus the same overhead. Energy is composed only where the layer and
all its parts were measured by one energy method: measured and modelled are never added into one
number.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.profile import curves, overhead
from bench.profile.fit import Fit, FitError
from kernels import REGISTRY, Shape

TARGET_REL_ERROR = 0.15  # the composition check's target on time and energy (issue 15)
_SHAPE_FIELDS = [f.name for f in dataclasses.fields(Shape)]


def shape_of_row(row: pd.Series | dict[str, Any]) -> Shape:
    """The shape of a measured point; fields it left empty (unused by its case) take the defaults."""
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(Shape):
        value = row.get(f.name)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        kw[f.name] = bool(value) if f.type in ("bool", bool) else (float(value) if f.type in ("float", float)
                                                                    else int(value))
    return Shape(**kw)


def _dtype(name: str):
    import torch

    return getattr(torch, str(name))


def _fit_of(fits: dict[str, Any], kind: str, key: str) -> Fit | None:
    return Fit.from_dict(fits.get(kind, {}).get(key))


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)  # shape columns read back as floats (NaN where a case leaves them empty)
    except (TypeError, ValueError):
        return str(a) == str(b)


def measured_point(df: pd.DataFrame | None, name: str, shape: Shape, dtype: str) -> tuple[pd.Series | None, str]:
    """The time and energy of case `name` at `shape` and `dtype` from its measured points (averaged
    where several), or interpolated linearly in the batch between the nearest measured batches
    below and above at otherwise the same shape (a part's cost is near linear in its tokens between
    neighbours, where a roofline may miss a step between them); with how it was got. (None, "")
    where neither is possible."""
    if df is None:
        return None, ""
    rows = df[(df["kernel"] == name) & (df["dtype"].astype(str) == str(dtype))]
    fields = REGISTRY.get(name).shape_fields(shape)
    for field, value in fields.items():
        if len(rows) == 0 or field not in rows:
            return None, ""
        if field != "batch_size":
            rows = rows[[_same(v, value) for v in rows[field]]]
    cols = ["time_per_call_s", "device_energy_per_call_j"]
    batch = rows["batch_size"].astype(float)
    exact = rows[batch == float(shape.batch_size)]
    if len(exact):
        return exact[cols].mean(), f"measured:{name}"
    below, above = batch[batch < shape.batch_size], batch[batch > shape.batch_size]
    if len(below) == 0 or len(above) == 0:
        return None, ""
    lo, hi = below.max(), above.min()
    a, b = rows.loc[batch == lo, cols].mean(), rows.loc[batch == hi, cols].mean()
    return a + (b - a) * (shape.batch_size - lo) / (hi - lo), f"measured:{name} interpolated between batch {lo:g} and {hi:g}"


def part_costs(row: pd.Series, fits: dict[str, Any], profile: str, measured: pd.DataFrame | None = None
               ) -> tuple[list[dict[str, Any]], str | None]:
    """Each part of the layer point `row`: its case, its time and energy (from its measured point
    at this shape in `measured` where there is one, else from its fit), their source, and its fits'
    predictions (`fit_time_s`, `fit_energy_j`); or the reason it cannot be composed (a part
    without a fit)."""
    case = REGISTRY.get(row["kernel"])
    shape, dtype = shape_of_row(row), _dtype(row["dtype"])
    out = []
    for name, part_shape in case.parts(shape):
        part = REGISTRY.get(name)
        if part.op.startswith("linear."):
            tfit, efit = _fit_of(fits, "linear_time_roofline", part.op), _fit_of(fits, "linear_energy", part.op)
            source = f"profile:{profile} linear_time_roofline[{part.op}]"
        else:
            tfit, efit = _fit_of(fits, "time_roofline", name), _fit_of(fits, "energy_per_case", name)
            source = f"profile:{profile} time_roofline[{name}]"
        if tfit is None:
            return [], f"no time fit for part {name} ({source.split(' ', 1)[1]})"
        flops, nbytes = part.flops(part_shape), part.min_bytes(part_shape, dtype)
        t_fit = float(curves.predict_time_s(tfit, flops, nbytes)[0])
        e_fit = float(curves.predict_energy_j(efit, flops, nbytes, t_fit)) if efit is not None else math.nan
        t, e = t_fit, e_fit
        point, how = measured_point(measured, name, part_shape, row["dtype"])
        if point is not None:
            t, e, source = float(point["time_per_call_s"]), float(point["device_energy_per_call_j"]), how
        out.append({"part": name, "op": part.op, "time_s": t, "energy_j": e, "source": source,
                    "fit_time_s": t_fit, "fit_energy_j": e_fit})
    return out, None


def kv_elements(row: pd.Series | dict[str, Any]) -> float:
    """KV-cache elements a layer point's attention reads from a cache: decode, K and V of every
    request's context; prefill none (it attends the K and V the layer has just computed)."""
    if row["phase"] != "decode":
        return 0.0
    return 2.0 * float(row["batch_size"]) * float(row["context_len"]) * float(row["kv_heads"]) * float(row["head_dim"])


_NAMES = {"time": ("c0_s", "c_elem_s", "c_kv_s"), "energy": ("e0_j", "e_elem_j", "e_kv_j")}


def _overhead(table: pd.DataFrame, what: str) -> tuple[Fit, np.ndarray]:
    unit = "time_s" if what == "time" else "energy_j"
    cols = {"c0": np.ones(len(table)), "elem": (table["tokens"] * table["hidden"]).to_numpy(float),
            "kv": table["kv_elements"].to_numpy(float)}
    r = overhead.Residuals(cols, table[f"measured_{unit}"].to_numpy(float), table[f"parts_{unit}"].to_numpy(float))
    return overhead.fit(f"layer_overhead_{what}", _NAMES[what], r)


def check(df: pd.DataFrame, fits: dict[str, Any], profile: str) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """Overhead fits per layer case, the composition table (one row per measured layer point),
    and what could not be composed. `df`: prepared points of good quality at default clocks (the
    parts' measured points are taken from it too)."""
    skipped: list[str] = []
    overheads: dict[str, Any] = {}
    tables = []
    layers = df[df["op"] == "layer"]
    for kernel, group in layers.groupby("kernel", sort=True):
        rows = []
        for _, row in group.iterrows():
            parts, why = part_costs(row, fits, profile, df)
            if why:
                skipped.append(f"composition {row['batch_group']} batch={row['batch_size']:g}: {why}")
                continue
            rows.append({**_identity(row), "kv_elements": kv_elements(row), "parts": parts})
        if not rows:
            continue
        table = pd.DataFrame(rows)
        part_names = [p["part"] for p in rows[0]["parts"]]
        methods = set(df.loc[df["kernel"].isin([kernel, *part_names]), "device_energy_method"].astype(str))
        for what, unit in (("time", "time_s"), ("energy", "energy_j")):
            table[f"parts_{unit}"] = [sum(p[unit] for p in r["parts"]) for r in rows]
            table[f"fit_parts_{unit}"] = [sum(p[f"fit_{unit}"] for p in r["parts"]) for r in rows]
            table[f"composed_{unit}"] = table[f"overhead_{unit}"] = table[f"composed_{unit}_fit_parts"] = np.nan
        try:
            tfit, held_t = _overhead(table, "time")
        except FitError as err:
            skipped.append(f"composition {kernel}: {err}")
            continue
        overheads[kernel] = {"time": tfit}
        _held(table, "time_s", held_t)
        table["energy_method"] = "; ".join(sorted(methods))
        if len(methods) == 1 and np.isfinite(table["parts_energy_j"]).all():
            efit, held_e = _overhead(table, "energy")
            overheads[kernel]["energy"] = efit
            _held(table, "energy_j", held_e)
        else:
            skipped.append(f"composition {kernel} energy: the layer and its parts were measured by "
                           f"{len(methods)} energy methods ({', '.join(sorted(methods))}) or a part lacks an energy fit")
        for what, unit in (("time", "time_s"), ("energy", "energy_j")):
            table[f"{what}_rel_error"] = table[f"composed_{unit}"] / table[f"measured_{unit}"] - 1
            table[f"{what}_rel_error_fit_parts"] = table[f"composed_{unit}_fit_parts"] / table[f"measured_{unit}"] - 1
        table["parts_measured"] = [sum(p["source"].startswith("measured:") for p in r["parts"]) for r in rows]
        table["sources"] = [_sources(r["parts"], kernel) for r in rows]
        tables.append(table.drop(columns="parts"))
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return overheads, out, skipped


def _held(table: pd.DataFrame, unit: str, held: np.ndarray) -> None:
    """Each point's held-out composed value, its overhead, and the same overhead on the parts' fits."""
    table[f"composed_{unit}"] = held
    table[f"overhead_{unit}"] = held - table[f"parts_{unit}"]
    table[f"composed_{unit}_fit_parts"] = table[f"fit_parts_{unit}"] + table[f"overhead_{unit}"]


def _identity(row: pd.Series) -> dict[str, Any]:
    return {"kernel": row["kernel"], "phase": row["phase"], "dtype": row["dtype"],
            **{k: row.get(k) for k in ("batch_size", "seq_len", "context_len", "page_size", "hidden", "ffn", "heads",
                                       "kv_heads", "head_dim")},
            "tokens": int(row["tokens_per_call"]), "measured_time_s": float(row["time_per_call_s"]),
            "measured_energy_j": float(row["device_energy_per_call_j"]), "time_method": row.get("time_method")}


def _sources(parts: list[dict[str, Any]], kernel: str) -> str:
    named = "; ".join(f"{p['part']}: {p['source']}" for p in parts)
    return f"{named}; overhead: calibrated:{kernel} residuals (form chosen and fitted without this point)"


def summary(table: pd.DataFrame, errors: str = "") -> pd.DataFrame:
    """Per layer case and over all: points, RMS and worst relative error of time and energy, and
    whether the worst meets the target. `errors="_fit_parts"`: of the points composed from the
    parts' fits alone."""
    rows = []
    groups = [(k, g) for k, g in table.groupby("kernel", sort=True)] + [("all", table)]
    for name, g in groups:
        row: dict[str, Any] = {"kernel": name, "points": len(g)}
        for what in ("time", "energy"):
            e = g[f"{what}_rel_error{errors}"].dropna().abs() if f"{what}_rel_error{errors}" in g else pd.Series(dtype=float)
            row[f"{what} rms"] = float(np.sqrt(np.mean(e ** 2))) if len(e) else math.nan
            row[f"{what} worst"] = float(e.max()) if len(e) else math.nan
        worst = [row["time worst"], row["energy worst"]]
        row[f"within {TARGET_REL_ERROR:.0%}"] = ("n/a" if any(math.isnan(v) for v in worst)
                                                 else "yes" if max(worst) <= TARGET_REL_ERROR else "no")
        rows.append(row)
    return pd.DataFrame(rows)
