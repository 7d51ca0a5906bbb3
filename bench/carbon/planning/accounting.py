"""Per-request and scoped accounting of a verified plan (what users of energy tools ask for most).

Per request: its share of every simulated step's energy by tokens processed (prefill and decode
apart, `serving/simulate.py`), over every hour of the period, in J and in gCO2e at its hour's
intensity x PUE; as distributions (p50/p90/p99) and per 1,000 tokens (prompt + output).

Energy per token at four scopes, each saying what it counts:
- `gpu`: the simulated busy energy of the GPUs (steps only), over the tokens served;
- `node`: the active replicas' simulated energy over every hour (steps and idle power between
  them) plus the host power of the nodes holding them in that hour (`inputs/host_power.py`, a
  labelled model: CPUs at the hosts' serving utilisation and DRAM), no PUE;
- `facility`: `gpu` x PUE;
- `provisioned`: the active replicas' simulated energy over every hour (steps and idle power
  between them) x PUE, over the same tokens: what idle capacity adds.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.carbon.inputs import embodied
from bench.common import quantiles
from bench.carbon.inputs.host_power import HostPower
from bench.carbon.planning.setting import J_PER_KWH, Plan

QUANTILES = (50, 90, 99)


DIRECT_MAX = 2_000_000  # per-request values built and sorted directly up to this many (else from groups)


def per_request(plan: Plan, intensity_g_per_kwh: np.ndarray, pue: float) -> pd.DataFrame:
    """p50/p90/p99 per request of prefill J, decode J, total J, gCO2e, and J and gCO2e per 1,000 tokens.

    Hours that share one simulated result (a replayed trace) are one group: its requests' values,
    once per hour, grams scaled by each hour's intensity (`bench.common.quantiles`); the same
    figures as building every request of the period, which a year of a busy trace cannot afford."""
    v = plan.verification
    if v is None or not v.hours:
        return pd.DataFrame()
    shared: dict[int, tuple[object, list[int]]] = {}
    for h, hour in enumerate(v.hours):
        shared.setdefault(id(hour), (hour, []))[1].append(h)
    g_per_j = pue / J_PER_KWH * np.asarray(intensity_g_per_kwh, float)
    metrics: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {
        k: [] for k in ("prefill J", "decode J", "total J", "gCO2e", "J per 1k tokens", "gCO2e per 1k tokens")}
    for hour, hours in shared.values():
        total = hour.prefill_j + hour.decode_j
        per_k = total * 1000.0 / np.maximum(hour.tokens, 1.0)
        once, grams = np.ones(len(hours)), g_per_j[hours]
        for key, values, factors in (("prefill J", hour.prefill_j, once), ("decode J", hour.decode_j, once),
                                     ("total J", total, once), ("gCO2e", total, grams),
                                     ("J per 1k tokens", per_k, once), ("gCO2e per 1k tokens", per_k, grams)):
            metrics[key].append((values, factors))
    rows = []
    for key, groups in metrics.items():
        if quantiles.size(groups) <= DIRECT_MAX:
            values = np.concatenate([np.outer(vals, f).ravel() for vals, f in groups])
            stats = [float(np.percentile(values, q)) if len(values) else math.nan for q in QUANTILES]
            mean = float(values.mean()) if len(values) else math.nan
        else:
            stats, mean = quantiles.percentiles(groups, QUANTILES), quantiles.mean(groups)
        rows.append({"per request": key, **{f"p{q}": x for q, x in zip(QUANTILES, stats)}, "mean": mean})
    return pd.DataFrame(rows)


def active_nodes(plan: Plan) -> dict[str, np.ndarray]:
    """Per GPU type, the nodes holding the hour's active GPUs (packed full, as provisioned)."""
    out = {}
    for t in plan.node_types:
        gpus = sum(plan.active[:, j] * c.candidate.device.devices for j, c in enumerate(plan.candidates)
                   if c.candidate.hardware == t)
        out[t] = np.ceil(np.asarray(gpus, float) / float(embodied.gpus().loc[t, "gpus_per_node"]) - 1e-9)
    return out


def scopes(plan: Plan, pue: float, host_power: dict[str, HostPower] | None = None) -> pd.DataFrame:
    """`host_power`: per GPU type, the modelled power of one node's host (None: no node scope)."""
    v = plan.verification
    if v is None or not v.hours:
        return pd.DataFrame()
    busy_j = sum(float((h.prefill_j + h.decode_j).sum()) for h in v.hours)
    tokens = sum(float(h.tokens.sum()) for h in v.hours)
    if tokens <= 0:
        return pd.DataFrame()
    gpu = busy_j / tokens
    active_j = sum(h.gpu_energy_j for h in v.hours)
    if host_power:
        nodes = active_nodes(plan)
        host_j = sum(float(nodes[t].sum()) * host_power[t].total_w * 3600.0 for t in nodes)
        methods = "; ".join(sorted({f"{t}: {p.total_w:.0f} W per node ({p.method}; {p.tdp_source})"
                                    for t, p in host_power.items() if t in nodes}))
        node = {"scope": "node", "J per token": (active_j + host_j) / tokens,
                "counts": "the active replicas over every hour (steps and idle power between them) + the host power of "
                          f"the nodes holding them, a model: {methods}; no PUE"}
    else:
        node = {"scope": "node", "J per token": math.nan, "counts": "not given: no host power model was passed"}
    return pd.DataFrame([
        {"scope": "gpu", "J per token": gpu, "counts": "simulated GPU busy energy (steps) of every request served"},
        node,
        {"scope": "facility", "J per token": gpu * pue, "counts": f"gpu x PUE {pue:g}"},
        {"scope": "provisioned", "J per token": active_j * pue / tokens,
         "counts": "the active replicas over every hour (steps and idle power between them) x PUE"},
    ])
