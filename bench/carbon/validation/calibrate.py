"""Calibration of a datasheet device model's physical parameters against measured servers.

Seven parameters per GPU type (`serving.device.PHYSICAL`), none per LLM: the per-step overhead (s),
the share of peak HBM bandwidth attention's KV-cache reads achieve, static power while busy (W),
energy per flop and per HBM byte (pJ; a weight streamed and a KV-cache byte read cost the same), and
the time (s) and energy (mJ) of each sampled position's per-request work. Fixed, not fitted: the
achievable flop and weight-streaming fractions measured by this project (`data/ceilings.csv`) and
the TDP as power cap. The fit (`scipy.optimize.least_squares`, bounded) minimises the log ratios of
predicted to measured energy per output token and p90 inter-token latency, and of average power where
the file has it (power and latency pin down how energy splits into time and watts), over the replayed
schedules. It reports its residuals in-sample and leave-one-out (each row predicted by a fit without it).

Where this project has measured the GPU type's power on two kernels (`data/power_anchors.csv`: a
compute-bound prefill and a bandwidth-bound decode, NVML energy counter), energy per flop and per
byte are not fitted but solved from them: given the static power, the two linear equations
P = P_0 + e_flop x flop rate + e_byte x byte rate of the two kernels fix both, and five parameters
are fitted.

Why KV bytes cost a streamed byte's energy and the rest of what grows with the batch is per
sequence: one model's sweep cannot tell energy per KV byte from energy per running request (at every
max batch its requests have about the same context, so KV reads and requests per step grow
together). Fitted as a KV-byte energy on Llama-3.1-8B (422 pJ, three times a streamed byte's), it
charged models with more KV per request (Gemma-3-12B: 3x Llama's bytes per token; Qwen3: longer
outputs) for work they do not do: held against ML.ENERGY's servers of five other models on one
H100 each, Gemma-3-12B's energy was overpredicted by up to 28% and Qwen3-14B's by 21%; with the KV
byte priced as an HBM byte and a per-sequence term, at most 15% on one GPU (two-GPU servers read up to
18% low; README.md).
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
      "seq_s": 1e-5, "e_seq_mj": 5.0}
SCALE = {"overhead_s": 1e-3, "kv_bw_fraction": 0.1, "p_static_w": 100.0, "e_flop_pj": 1.0, "e_byte_pj": 30.0,
         "seq_s": 1e-5, "e_seq_mj": 5.0}
LOW = {"overhead_s": 0.0, "kv_bw_fraction": 0.05, "p_static_w": 0.0, "e_flop_pj": 0.0, "e_byte_pj": 0.0,
       "seq_s": 0.0, "e_seq_mj": 0.0}


ANCHORS = devices.embodied.DATA / "power_anchors.csv"
ANCHORED = ("e_flop_pj", "e_byte_pj")


def anchors(gpu: str) -> pd.DataFrame | None:
    """The compute and stream power anchors of `gpu`, indexed by kind, or None where it has none."""
    a = pd.read_csv(ANCHORS)
    a = a[a["gpu"] == gpu].set_index("kind")
    if a.index.duplicated().any():
        raise ValueError(f"{ANCHORS}: {gpu} has more than one anchor of a kind ({', '.join(a.index)})")
    return a if {"compute", "stream"} <= set(a.index) else None


def anchored(params: dict, anchor: pd.DataFrame) -> dict:
    """`params` with energy per flop and per streamed byte solved from the two anchors at its static
    power (pJ: W over TFLOP/s and over TB/s); negative solutions, for a static power above what the
    anchors allow, are clipped to 0 (and then miss the anchors, which the fit's bounds avoid)."""
    rates = anchor.loc[["compute", "stream"], ["tflop_per_s", "gb_per_s"]].to_numpy(float) * [1.0, 1e-3]
    dynamic_w = anchor.loc[["compute", "stream"], "power_w"].to_numpy(float) - params["p_static_w"]
    e_flop, e_byte = np.linalg.solve(rates, dynamic_w)
    return {**params, "e_flop_pj": max(float(e_flop), 0.0), "e_byte_pj": max(float(e_byte), 0.0)}


def high(gpu: str) -> dict:
    tdp = float(devices.embodied.gpus().loc[gpu, "tdp_w"])
    return {"overhead_s": 0.05, "kv_bw_fraction": 1.0, "p_static_w": 0.98 * tdp, "e_flop_pj": 20.0, "e_byte_pj": 2000.0,
            "seq_s": 1e-3, "e_seq_mj": 100.0}


@dataclass(frozen=True)
class Calibration:
    gpu: str
    source: str
    params: dict
    flop_fraction: float
    bw_fraction: float
    residuals: pd.DataFrame  # per row: in-sample relative errors (and leave-one-out ones, if run)
    cost: float
    anchored: bool = False  # energy per flop and per streamed byte solved from the GPU's power anchors

    @property
    def label(self) -> str:
        return f"model:datasheet+calibrated:{self.source}"

    def device(self, tp: int = 1) -> devices.DeviceModel:
        return devices.physical(self.gpu, self.params, self.flop_fraction, self.bw_fraction, self.label, tp)

    def to_json(self, about: dict) -> dict:
        return {"gpu": self.gpu, "source": self.source, "label": self.label, "params": self.params,
                "fixed": {"flop_fraction": self.flop_fraction, "bw_fraction": self.bw_fraction,
                          "power_cap": "the GPU's TDP (data/gpus.csv)",
                          "e_kv_byte": "a streamed byte's (e_byte_pj): one HBM byte",
                          "fractions_source": (devices.fractions(self.gpu) or (0, 0, "the reference GPU's"))[2]},
                "fit": "scipy.optimize.least_squares, bounded, on log(predicted / measured) of energy per output "
                       "token, p90 ITL and average power per row",
                "anchored": (f"e_flop_pj and e_byte_pj solved from the power anchors of {self.gpu} "
                             "(data/power_anchors.csv) at the fitted static power" if self.anchored else "none"),
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


def _free(anchor: pd.DataFrame | None) -> tuple[str, ...]:
    return tuple(k for k in devices.PHYSICAL if anchor is None or k not in ANCHORED)


def fitted_parameters(gpu: str) -> tuple[str, ...]:
    """The parameters a refit of `gpu` fits (those its measured anchors do not fix)."""
    return _free(anchors(gpu))


def _params(x: np.ndarray, anchor: pd.DataFrame | None) -> dict:
    params = dict(zip(_free(anchor), (float(v) for v in x)))
    return anchored({**params, "e_flop_pj": 0.0, "e_byte_pj": 0.0}, anchor) if anchor is not None else params


def _residuals(model: ModelSpec, gpu: str, rows: pd.DataFrame, scheds: list[Schedule], fixed: tuple[float, float],
               tp: int, x: np.ndarray, anchor: pd.DataFrame | None = None) -> np.ndarray:
    params = _params(x, anchor)
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
    anchor = anchors(gpu)
    free = _free(anchor)
    hi = high(gpu)
    if anchor is not None:  # a static power the anchors leave room for: both energies non-negative
        hi["p_static_w"] = min(hi["p_static_w"], p_static_max_w(anchor))
    x0 = np.array([X0[k] for k in free])
    lo, up = np.array([LOW[k] for k in free]), np.array([hi[k] for k in free])

    def solve(keep: np.ndarray) -> np.ndarray:
        part = rows[keep].reset_index(drop=True)
        sched = [s for s, k in zip(scheds, keep) if k]
        res = least_squares(lambda x: _residuals(model, gpu, part, sched, fixed, tp, x, anchor), np.clip(x0, lo, up),
                            x_scale=np.array([SCALE[k] for k in free]), bounds=(lo, up))
        return res.x

    all_rows = np.ones(len(rows), bool)
    x = solve(all_rows)
    params = _params(x, anchor)
    dev = devices.physical(gpu, params, *fixed, "fit", tp)
    table = errors(rows, predictions(model, dev, scheds))
    if leave_one_out and len(rows) > 2:
        loo = []
        for i in range(len(rows)):
            keep = all_rows.copy()
            keep[i] = False
            xi = _params(solve(keep), anchor)
            p = predictions(model, devices.physical(gpu, xi, *fixed, "loo", tp), [scheds[i]])[0]
            loo.append({"loo_energy_rel_error": p.energy_per_token_j / rows["energy_per_token_j"].iloc[i] - 1,
                        "loo_p90_itl_rel_error": p.p90_itl_s * 1e3 / rows["p90_itl_ms"].iloc[i] - 1})
        table = pd.concat([table, pd.DataFrame(loo)], axis=1)
    cost = float(np.sum(_residuals(model, gpu, rows, scheds, fixed, tp, x, anchor) ** 2))
    return Calibration(gpu, source, params, fixed[0], fixed[1], table, cost, anchor is not None)


def p_static_max_w(anchor: pd.DataFrame) -> float:
    """The largest static power at which both anchored energies stay >= 0 (0.99 of it)."""
    rates = anchor.loc[["compute", "stream"], ["tflop_per_s", "gb_per_s"]].to_numpy(float) * [1.0, 1e-3]
    power = anchor.loc[["compute", "stream"], "power_w"].to_numpy(float)
    # e = R^-1 (P - p0 1) is linear in p0: each component hits 0 at p0 = (R^-1 P)_i / (R^-1 1)_i.
    inv = np.linalg.inv(rates)
    a, b = inv @ power, inv @ np.ones(2)
    bounds = [ai / bi for ai, bi in zip(a, b) if bi > 0]
    if (a < 0).any() or not bounds or min(bounds) <= 0:
        raise ValueError(f"{ANCHORS}: its two kernels leave no static power at which energy per flop and per "
                         "byte are both >= 0 (the compute kernel must be the flop-heavy one)")
    return 0.99 * float(min(bounds))


def errors(rows: pd.DataFrame, preds: list[Prediction]) -> pd.DataFrame:
    """Relative errors (predicted / measured - 1) per row."""
    return pd.DataFrame({
        "max_num_seqs": rows["max_num_seqs"].to_numpy(),
        "energy_rel_error": [p.energy_per_token_j / m - 1 for p, m in zip(preds, rows["energy_per_token_j"])],
        "p90_itl_rel_error": [p.p90_itl_s * 1e3 / m - 1 for p, m in zip(preds, rows["p90_itl_ms"])],
    })
