"""The efficiency curves of a profile, each a pure function of a table of measured points.

- `time_roofline`: per case, time per call = max(flops / rate, bytes / bandwidth) + overhead.
- `energy_roofline`: across cases of one device and clock, E = e_flop x flops + e_byte x bytes
  + P_0 x t, so the energy of unmeasured shapes can be predicted.
- `batching`: energy per token = e_inf + c / batch per case and length (a fixed cost per call
  amortised over the batch), and the batch beyond which doubling it saves less than 5%.
- `frequency`: power = P_static + c x f^a and time = t_0 + k / f per case and shape, and the
  energy-optimal clock.
- `offload`: host energy per token of the CPU-offload cases = a + b / batch per setting.

Input columns (`bench.profile.build.prepare` derives the last four from raw points): `kernel`,
`phase`, `batch_size`, `flops_per_call`, `min_bytes_per_call`, `tokens_per_call`,
`time_per_call_s`, `shape_id`, `length`, `device_energy_per_call_j`, `host_energy_per_call_j`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.profile.fit import Fit, FitError, linear_fit, nonlinear_fit

SATURATION_GAIN = 0.05  # doubling the batch must save more than this share of energy per token


def _roofline_time(theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    flops, nbytes = x[:, 0], x[:, 1]
    return np.maximum(flops / 10.0 ** theta[0], nbytes / 10.0 ** theta[1]) + theta[2]


def time_roofline(points: pd.DataFrame) -> Fit:
    """Fit one case's time per call; rates in log10 so they stay positive and well scaled."""
    x = points[["flops_per_call", "min_bytes_per_call"]].to_numpy(float)
    t = points["time_per_call_s"].to_numpy(float)
    theta0 = [math.log10(max(x[:, 0] / t)), math.log10(max(x[:, 1] / t)), float(min(t)) / 2]
    fit = nonlinear_fit(
        "time_roofline", "t = max(flops / 10^log10_flop_per_s, bytes / 10^log10_bytes_per_s) + overhead_s",
        ["log10_flop_per_s", "log10_bytes_per_s", "overhead_s"], _roofline_time, x, t, theta0,
        groups=points["shape_id"].to_numpy(), bounds=([0, 0, 0], [20, 20, np.inf]))
    fit.extra.update({"flop_per_s": 10 ** fit.params["log10_flop_per_s"],
                      "bytes_per_s": 10 ** fit.params["log10_bytes_per_s"]})
    return fit


def predict_time_s(fit: Fit, flops: Any, nbytes: Any) -> np.ndarray:
    p = fit.params
    x = np.column_stack([np.atleast_1d(flops), np.atleast_1d(nbytes)]).astype(float)
    return _roofline_time(np.array([p["log10_flop_per_s"], p["log10_bytes_per_s"], p["overhead_s"]]), x)


def energy_roofline(points: pd.DataFrame) -> Fit:
    x = points[["flops_per_call", "min_bytes_per_call", "time_per_call_s"]].to_numpy(float)
    return linear_fit("energy_roofline", "E = e_flop_j x flops + e_byte_j x bytes + p0_w x t",
                      ["e_flop_j", "e_byte_j", "p0_w"], x, points["device_energy_per_call_j"].to_numpy(float),
                      groups=(points["kernel"] + "|" + points["shape_id"]).to_numpy())


def predict_energy_j(fit: Fit, flops: Any, nbytes: Any, time_s: Any) -> np.ndarray:
    p = fit.params
    return p["e_flop_j"] * np.asarray(flops, float) + p["e_byte_j"] * np.asarray(nbytes, float) \
        + p["p0_w"] * np.asarray(time_s, float)


def _per_batch(points: pd.DataFrame, value: str, model: str) -> Fit:
    b = points["batch_size"].to_numpy(float)
    y = (points[value] / points["tokens_per_call"]).to_numpy(float)
    fit = linear_fit(model, "energy per token = e_inf_j + c_j / batch", ["e_inf_j", "c_j"],
                     np.column_stack([np.ones_like(b), 1.0 / b]), y, groups=b)
    e_inf, c = fit.params["e_inf_j"], fit.params["c_j"]
    g = SATURATION_GAIN
    # Doubling B saves c / (2 (B e_inf + c)) of e(B); below `g` once B > c (1 - 2g) / (2 g e_inf).
    fit.extra["saturation_batch"] = (math.ceil(c * (1 - 2 * g) / (2 * g * e_inf)) if e_inf > 0 and c > 0
                                     else (1 if c <= 0 else math.inf))
    fit.extra["saturation_batch_measured"] = saturation_measured(points["batch_size"].to_numpy(), y)
    return fit


def saturation_measured(batches: np.ndarray, energy_per_token: np.ndarray, gain: float = SATURATION_GAIN) -> int:
    """Smallest measured batch after which the next measured one saves less than `gain`."""
    order = np.argsort(batches)
    b, e = np.asarray(batches)[order], np.asarray(energy_per_token)[order]
    for i in range(len(b) - 1):
        if (e[i] - e[i + 1]) / e[i] < gain:
            return int(b[i])
    return int(b[-1])


def batching(points: pd.DataFrame) -> Fit:
    """One case at one length (and otherwise equal shape), several batch sizes."""
    return _per_batch(points, "device_energy_per_call_j", "batching")


def offload_host(points: pd.DataFrame) -> Fit:
    """Host energy per token of one CPU-offload setting across batch sizes."""
    return _per_batch(points, "host_energy_per_call_j", "offload_host")


def _power(theta: np.ndarray, f_ghz: np.ndarray) -> np.ndarray:
    return theta[0] + theta[1] * np.power(f_ghz[:, 0], theta[2])


def frequency(points: pd.DataFrame) -> dict[str, Any]:
    """Power and time vs SM clock for one case and shape, and the energy-optimal clock."""
    f_mhz = points["clock_mhz"].to_numpy(float)
    power = (points["device_energy_per_call_j"] / points["time_per_call_s"]).to_numpy(float)
    groups = f_mhz
    x = (f_mhz / 1000.0)[:, None]
    p_fit = nonlinear_fit("frequency_power", "P = p_static_w + c_w x (f / GHz)^a", ["p_static_w", "c_w", "a"], _power,
                          x, power, [float(min(power)) / 2, float(max(power)) / 2, 2.0], groups=groups,
                          bounds=([0, 0, 0.5], [np.inf, np.inf, 6]))
    t_fit = linear_fit("frequency_time", "t = t0_s + k_s_ghz / (f / GHz)", ["t0_s", "k_s_ghz"],
                       np.column_stack([np.ones_like(f_mhz), 1000.0 / f_mhz]), points["time_per_call_s"].to_numpy(float),
                       groups=groups)
    energy = points["device_energy_per_call_j"].to_numpy(float)
    best = int(np.argmin(energy))
    grid = np.linspace(f_mhz.min(), f_mhz.max(), 200)
    p = p_fit.params
    modelled = (p["p_static_w"] + p["c_w"] * (grid / 1000) ** p["a"]) * (t_fit.params["t0_s"] + t_fit.params["k_s_ghz"] * 1000 / grid)
    return {"power": p_fit, "time": t_fit, "energy_optimal_mhz_measured": float(f_mhz[best]),
            "energy_optimal_mhz_fitted": float(grid[int(np.argmin(modelled))]),
            "energy_at_optimum_vs_max_clock": float(energy[best] / energy[int(np.argmax(f_mhz))])}


def fit_groups(points: pd.DataFrame, by: list[str], fn, min_points: int) -> tuple[dict[str, Any], list[str]]:
    """Apply `fn` to each group of `points`; groups with too few points, or whose fit fails, are
    listed as skipped with the reason."""
    fits: dict[str, Any] = {}
    skipped: list[str] = []
    for key, group in points.groupby(by, dropna=False, sort=True):
        name = "|".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        if len(group) < min_points:
            skipped.append(f"{fn.__name__} {name}: {len(group)} points, needs {min_points}")
            continue
        try:
            fits[name] = fn(group)
        except FitError as err:
            skipped.append(f"{fn.__name__} {name}: {err}")
    return fits, skipped
