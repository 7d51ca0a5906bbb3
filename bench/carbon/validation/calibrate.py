"""Calibration of a datasheet device model's physical parameters against measured servers.

Six parameters per GPU type (`serving.device.PHYSICAL`), none per LLM: the per-step overhead (s),
the share of peak HBM bandwidth attention's KV-cache reads achieve, static power while busy (W), and
energy per flop, per weight byte streamed and per KV-cache byte read (pJ). Fixed, not fitted: the
achievable flop and weight-streaming fractions measured by this project (`data/ceilings.csv`) and
the TDP as power cap. The fit
(`scipy.optimize.least_squares`, bounded) minimises the log ratios of predicted to measured energy
per output token and p90 inter-token latency, and of average power where the file has it (power
and latency pin down how energy splits into time and watts), over the replayed schedules. It
reports its residuals in-sample and leave-one-out (each row predicted by a fit without it).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from bench.carbon.serving import device as devices
from bench.carbon.serving.models import ModelSpec
from bench.carbon.serving.step import StepCost
from bench.carbon.validation.replay import Prediction, Schedule, predict

X0 = {"overhead_s": 2e-3, "kv_bw_fraction": 0.55, "p_static_w": 250.0, "e_flop_pj": 1.0, "e_byte_pj": 100.0,
      "e_kv_byte_pj": 100.0}
SCALE = {"overhead_s": 1e-3, "kv_bw_fraction": 0.1, "p_static_w": 100.0, "e_flop_pj": 1.0, "e_byte_pj": 30.0,
         "e_kv_byte_pj": 30.0}
LOW = {"overhead_s": 0.0, "kv_bw_fraction": 0.05, "p_static_w": 0.0, "e_flop_pj": 0.0, "e_byte_pj": 0.0,
       "e_kv_byte_pj": 0.0}


def high(gpu: str) -> dict:
    tdp = float(devices.embodied.gpus().loc[gpu, "tdp_w"])
    return {"overhead_s": 0.05, "kv_bw_fraction": 1.0, "p_static_w": 0.98 * tdp, "e_flop_pj": 20.0, "e_byte_pj": 2000.0,
            "e_kv_byte_pj": 2000.0}


@dataclass(frozen=True)
class Calibration:
    gpu: str
    source: str
    params: dict
    flop_fraction: float
    bw_fraction: float
    residuals: pd.DataFrame  # per row: in-sample relative errors (and leave-one-out ones, if run)
    cost: float

    @property
    def label(self) -> str:
        return f"model:datasheet+calibrated:{self.source}"

    def device(self, tp: int = 1) -> devices.DeviceModel:
        return devices.physical(self.gpu, self.params, self.flop_fraction, self.bw_fraction, self.label, tp)

    def to_json(self, about: dict) -> dict:
        return {"gpu": self.gpu, "source": self.source, "label": self.label, "params": self.params,
                "fixed": {"flop_fraction": self.flop_fraction, "bw_fraction": self.bw_fraction,
                          "power_cap": "the GPU's TDP (data/gpus.csv)",
                          "fractions_source": (devices.fractions(self.gpu) or (0, 0, "the reference GPU's"))[2]},
                "fit": "scipy.optimize.least_squares, bounded, on log(predicted / measured) of energy per output "
                       "token, p90 ITL and average power per row",
                "residuals": self.residuals.round(5).to_dict(orient="records"), **about}


def _fixed(gpu: str) -> tuple[float, float]:
    own = devices.fractions(gpu)
    if own:
        return own[0], own[1]
    ref = devices.fractions(devices.REFERENCE_GPU)
    return (ref[0], ref[1]) if ref else (1.0, 1.0)


def predictions(model: ModelSpec, dev: devices.DeviceModel, scheds: list[Schedule]) -> list[Prediction]:
    cost = StepCost.of(model, dev)
    return [predict(s, cost) for s in scheds]


def _residuals(model: ModelSpec, gpu: str, rows: pd.DataFrame, scheds: list[Schedule], fixed: tuple[float, float],
               tp: int, x: np.ndarray) -> np.ndarray:
    params = dict(zip(devices.PHYSICAL, x))
    dev = dataclasses.replace(devices.physical(gpu, params, *fixed, "fit", tp))
    out = []
    for (_, row), p in zip(rows.iterrows(), predictions(model, dev, scheds)):
        out += [np.log(p.energy_per_token_j / row["energy_per_token_j"]), np.log(p.p90_itl_s * 1e3 / row["p90_itl_ms"])]
        if "avg_power_w" in row and np.isfinite(row["avg_power_w"]):
            out.append(np.log(p.power_w / row["avg_power_w"]))
    return np.array(out)


def fit(model: ModelSpec, gpu: str, rows: pd.DataFrame, scheds: list[Schedule], source: str, tp: int = 1,
        leave_one_out: bool = False) -> Calibration:
    """Fit the physical parameters of `gpu` to `rows` (measured) over their schedules."""
    fixed = _fixed(gpu)
    hi = high(gpu)
    x0 = np.array([X0[k] for k in devices.PHYSICAL])
    lo, up = np.array([LOW[k] for k in devices.PHYSICAL]), np.array([hi[k] for k in devices.PHYSICAL])

    def solve(keep: np.ndarray) -> np.ndarray:
        part = rows[keep].reset_index(drop=True)
        sched = [s for s, k in zip(scheds, keep) if k]
        res = least_squares(lambda x: _residuals(model, gpu, part, sched, fixed, tp, x), np.clip(x0, lo, up),
                            x_scale=np.array([SCALE[k] for k in devices.PHYSICAL]), bounds=(lo, up))
        return res.x

    all_rows = np.ones(len(rows), bool)
    x = solve(all_rows)
    params = {k: float(v) for k, v in zip(devices.PHYSICAL, x)}
    dev = devices.physical(gpu, params, *fixed, "fit", tp)
    table = errors(rows, predictions(model, dev, scheds))
    if leave_one_out and len(rows) > 2:
        loo = []
        for i in range(len(rows)):
            keep = all_rows.copy()
            keep[i] = False
            xi = dict(zip(devices.PHYSICAL, solve(keep)))
            p = predictions(model, devices.physical(gpu, xi, *fixed, "loo", tp), [scheds[i]])[0]
            loo.append({"loo_energy_rel_error": p.energy_per_token_j / rows["energy_per_token_j"].iloc[i] - 1,
                        "loo_p90_itl_rel_error": p.p90_itl_s * 1e3 / rows["p90_itl_ms"].iloc[i] - 1})
        table = pd.concat([table, pd.DataFrame(loo)], axis=1)
    cost = float(np.sum(_residuals(model, gpu, rows, scheds, fixed, tp, x) ** 2))
    return Calibration(gpu, source, params, fixed[0], fixed[1], table, cost)


def errors(rows: pd.DataFrame, preds: list[Prediction]) -> pd.DataFrame:
    """Relative errors (predicted / measured - 1) per row."""
    return pd.DataFrame({
        "max_num_seqs": rows["max_num_seqs"].to_numpy(),
        "energy_rel_error": [p.energy_per_token_j / m - 1 for p, m in zip(preds, rows["energy_per_token_j"])],
        "p90_itl_rel_error": [p.p90_itl_s * 1e3 / m - 1 for p, m in zip(preds, rows["p90_itl_ms"])],
    })
