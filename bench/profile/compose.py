"""A decoder layer's cost composed from its measured parts, and the check of it against the layer.

A layer case declares its parts (`kernels.Case.parts`): the linear projections and the attention
case it runs one after another. Composed, a layer point costs the sum of its parts' fitted costs
plus an overhead:
- a linear projection: the `linear_time_roofline` of its op (`linear.qkv`, ...), fitted over the
  points of both phases of that projection; its energy from the `linear_energy` roofline of the
  op at that predicted time;
- attention: its case's `time_roofline` and `energy_per_case` fits;
- the overhead, what the parts leave out (the norms, RoPE, SiLU-and-multiply, residual adds, the
  cache write, the calls between): fitted per layer case on the residuals (measured layer minus
  its parts), `t = c0_s + c_elem_s x elements` and `E = e0_j + e_elem_j x elements`, where
  elements = tokens x hidden (what those elementwise ops touch), weighted by 1 / the layer's
  measured value so each point counts by its relative error.

The check (`check`) predicts each measured layer point with the overhead fitted on the other
points of its case (leave one out), so the errors it reports are out of sample. Energy is
composed only where the layer and all its parts were measured by one energy method: measured and
modelled are never added into one number.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd

from bench.profile import curves
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


def part_costs(row: pd.Series, fits: dict[str, Any], profile: str) -> tuple[list[dict[str, Any]], str | None]:
    """Each part of the layer point `row`: its case, predicted time and energy, and their source;
    or the reason it cannot be composed (a part without a fit)."""
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
        t = float(curves.predict_time_s(tfit, flops, nbytes)[0])
        e = float(curves.predict_energy_j(efit, flops, nbytes, t)) if efit is not None else math.nan
        out.append({"part": name, "op": part.op, "time_s": t, "energy_j": e, "source": source})
    return out, None


def _weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(a, b) minimising sum((a + b x - y) w)^2."""
    design = np.column_stack([np.ones_like(x), x]) * w[:, None]
    theta, *_ = np.linalg.lstsq(design, y * w, rcond=None)
    return theta


def _overhead_fit(model: str, names: tuple[str, str], x: np.ndarray, residual: np.ndarray, parts: np.ndarray,
                  measured: np.ndarray) -> tuple[Fit, np.ndarray]:
    """The overhead line on the residuals, and each point's composed value with the line fitted
    on the other points (NaN where too few remain)."""
    n = len(x)
    if n < 3 or len(np.unique(x)) < 2:
        raise FitError(f"{model}: {n} points of {len(np.unique(x))} sizes; needs 3 points of at least 2 sizes")
    w = 1.0 / measured
    theta = _weighted_line(x, residual, w)
    held = np.full(n, np.nan)
    for i in range(n):
        keep = np.arange(n) != i
        if len(np.unique(x[keep])) >= 2:
            a, b = _weighted_line(x[keep], residual[keep], w[keep])
            held[i] = parts[i] + max(0.0, a + b * x[i])  # an overhead never gives time back (as composed)
    from scipy import stats

    design = np.column_stack([np.ones_like(x), x]) * w[:, None]
    resid = design @ theta - residual * w
    dof = n - 2
    cov = (float(resid @ resid) / dof if dof else math.inf) * np.linalg.pinv(design.T @ design)
    t = stats.t.ppf(0.975, dof) if dof else math.inf
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    ci = {k: (float(v - t * s), float(v + t * s)) for k, v, s in zip(names, theta, se)}
    composed = parts + np.maximum(0.0, theta[0] + theta[1] * x)
    ss_res, ss_tot = float(np.sum((measured - composed) ** 2)), float(np.sum((measured - measured.mean()) ** 2))
    rel = np.abs(held - measured) / measured
    rel = rel[np.isfinite(rel)]
    fit = Fit(model, f"residual = {names[0]} + {names[1]} x tokens x hidden", dict(zip(names, map(float, theta))), ci,
              n, n, 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
              float(np.sqrt(np.mean(rel ** 2))) if len(rel) else math.nan, float(rel.max()) if len(rel) else math.nan,
              {"r2_and_cv_of": "the composed layer value (parts + overhead); CV: overhead fitted without the point"})
    return fit, held


def check(df: pd.DataFrame, fits: dict[str, Any], profile: str) -> tuple[dict[str, Any], pd.DataFrame, list[str]]:
    """Overhead fits per layer case, the composition table (one row per measured layer point),
    and what could not be composed. `df`: prepared points of good quality at default clocks."""
    skipped: list[str] = []
    overheads: dict[str, Any] = {}
    tables = []
    layers = df[df["op"] == "layer"]
    for kernel, group in layers.groupby("kernel", sort=True):
        rows = []
        for _, row in group.iterrows():
            parts, why = part_costs(row, fits, profile)
            if why:
                skipped.append(f"composition {row['batch_group']} batch={row['batch_size']:g}: {why}")
                continue
            rows.append({**_identity(row), "parts": parts})
        if not rows:
            continue
        table = pd.DataFrame(rows)
        part_names = [p["part"] for p in rows[0]["parts"]]
        methods = set(df.loc[df["kernel"].isin([kernel, *part_names]), "device_energy_method"].astype(str))
        table["parts_time_s"] = [sum(p["time_s"] for p in r["parts"]) for r in rows]
        table["parts_energy_j"] = [sum(p["energy_j"] for p in r["parts"]) for r in rows]
        x = (table["tokens"] * table["hidden"]).to_numpy(float)
        try:
            tfit, held_t = _overhead_fit("layer_overhead_time", ("c0_s", "c_elem_s"), x,
                                         (table["measured_time_s"] - table["parts_time_s"]).to_numpy(float),
                                         table["parts_time_s"].to_numpy(float), table["measured_time_s"].to_numpy(float))
        except FitError as err:
            skipped.append(f"composition {kernel}: {err}")
            continue
        overheads[kernel] = {"time": tfit}
        table["composed_time_s"] = held_t
        table["overhead_time_s"] = held_t - table["parts_time_s"]
        table["energy_method"] = "; ".join(sorted(methods))
        energy_ok = len(methods) == 1 and np.isfinite(table["parts_energy_j"]).all()
        table["composed_energy_j"] = table["overhead_energy_j"] = np.nan
        if energy_ok:
            efit, held_e = _overhead_fit("layer_overhead_energy", ("e0_j", "e_elem_j"), x,
                                         (table["measured_energy_j"] - table["parts_energy_j"]).to_numpy(float),
                                         table["parts_energy_j"].to_numpy(float),
                                         table["measured_energy_j"].to_numpy(float))
            overheads[kernel]["energy"] = efit
            table["composed_energy_j"] = held_e
            table["overhead_energy_j"] = held_e - table["parts_energy_j"]
        else:
            skipped.append(f"composition {kernel} energy: the layer and its parts were measured by "
                           f"{len(methods)} energy methods ({', '.join(sorted(methods))}) or a part lacks an energy fit")
        table["time_rel_error"] = table["composed_time_s"] / table["measured_time_s"] - 1
        table["energy_rel_error"] = table["composed_energy_j"] / table["measured_energy_j"] - 1
        table["sources"] = [_sources(r["parts"], kernel) for r in rows]
        tables.append(table.drop(columns="parts"))
    out = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return overheads, out, skipped


def _identity(row: pd.Series) -> dict[str, Any]:
    return {"kernel": row["kernel"], "phase": row["phase"], "dtype": row["dtype"],
            **{k: row.get(k) for k in ("batch_size", "seq_len", "context_len", "page_size", "hidden", "ffn", "heads",
                                       "kv_heads", "head_dim")},
            "tokens": int(row["tokens_per_call"]), "measured_time_s": float(row["time_per_call_s"]),
            "measured_energy_j": float(row["device_energy_per_call_j"]), "time_method": row.get("time_method")}


def _sources(parts: list[dict[str, Any]], kernel: str) -> str:
    named = "; ".join(f"{p['part']}: {p['source']}" for p in parts)
    return f"{named}; overhead: calibrated:{kernel} residuals (fitted without this point)"


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per layer case and over all: points, RMS and worst relative error of time and energy, and
    whether the worst meets the target."""
    rows = []
    groups = [(k, g) for k, g in table.groupby("kernel", sort=True)] + [("all", table)]
    for name, g in groups:
        row: dict[str, Any] = {"kernel": name, "points": len(g)}
        for what in ("time", "energy"):
            e = g[f"{what}_rel_error"].dropna().abs()
            row[f"{what} rms"] = float(np.sqrt(np.mean(e ** 2))) if len(e) else math.nan
            row[f"{what} worst"] = float(e.max()) if len(e) else math.nan
        worst = [row["time worst"], row["energy worst"]]
        row[f"within {TARGET_REL_ERROR:.0%}"] = ("n/a" if any(math.isnan(v) for v in worst)
                                                 else "yes" if max(worst) <= TARGET_REL_ERROR else "no")
        rows.append(row)
    return pd.DataFrame(rows)
