"""Per-request and scoped accounting of a verified plan (what users of energy tools ask for most).

Per request: its share of every simulated step's energy by tokens processed (prefill and decode
apart, `serving/simulate.py`), over every hour of the period, in J and in gCO2e at its hour's
intensity x PUE; as distributions (p50/p90/p99) and per 1,000 tokens (prompt + output).

Energy per token at four scopes, each saying what it counts:
- `gpu`: the simulated busy energy of the GPUs (steps only), over the tokens served;
- `node`: GPUs plus host power, which this planner does not model for GPU nodes: not given;
- `facility`: `gpu` x PUE;
- `provisioned`: the active replicas' simulated energy over every hour (steps and idle power
  between them) x PUE, over the same tokens: what idle capacity adds.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.carbon.planning.setting import J_PER_KWH, Plan

QUANTILES = (50, 90, 99)


def per_request(plan: Plan, intensity_g_per_kwh: np.ndarray, pue: float) -> pd.DataFrame:
    """p50/p90/p99 per request of prefill J, decode J, total J, gCO2e, and J and gCO2e per 1,000 tokens."""
    v = plan.verification
    if v is None or not v.hours:
        return pd.DataFrame()
    parts = {"prefill J": [], "decode J": [], "total J": [], "gCO2e": [], "J per 1k tokens": [], "gCO2e per 1k tokens": []}
    for h, hour in enumerate(v.hours):
        total = hour.prefill_j + hour.decode_j
        grams = total * pue / J_PER_KWH * intensity_g_per_kwh[h]
        per_k = 1000.0 / np.maximum(hour.tokens, 1.0)
        for key, values in (("prefill J", hour.prefill_j), ("decode J", hour.decode_j), ("total J", total),
                            ("gCO2e", grams), ("J per 1k tokens", total * per_k), ("gCO2e per 1k tokens", grams * per_k)):
            parts[key].append(values)
    rows = []
    for key, chunks in parts.items():
        values = np.concatenate(chunks)
        rows.append({"per request": key, **{f"p{q}": float(np.percentile(values, q)) if len(values) else math.nan
                                            for q in QUANTILES}, "mean": float(values.mean()) if len(values) else math.nan})
    return pd.DataFrame(rows)


def scopes(plan: Plan, pue: float) -> pd.DataFrame:
    v = plan.verification
    if v is None or not v.hours:
        return pd.DataFrame()
    busy_j = sum(float((h.prefill_j + h.decode_j).sum()) for h in v.hours)
    tokens = sum(float(h.tokens.sum()) for h in v.hours)
    if tokens <= 0:
        return pd.DataFrame()
    gpu = busy_j / tokens
    return pd.DataFrame([
        {"scope": "gpu", "J per token": gpu, "counts": "simulated GPU busy energy (steps) of every request served"},
        {"scope": "node", "J per token": math.nan, "counts": "not given: host power of GPU nodes is not modelled"},
        {"scope": "facility", "J per token": gpu * pue, "counts": f"gpu x PUE {pue:g}"},
        {"scope": "provisioned", "J per token": sum(h.gpu_energy_j for h in v.hours) * pue / tokens,
         "counts": "the active replicas over every hour (steps and idle power between them) x PUE"},
    ])
