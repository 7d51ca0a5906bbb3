"""Markdown tables of a profile: what was measured, how, what was dropped, and every fit with its
intervals and errors (poor fits included, marked poor)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench.common.markdown import cell as _num
from bench.common.markdown import table
from bench.profile.fit import Fit


def fit_rows(fits: dict[str, Any]) -> pd.DataFrame:
    rows = []

    def add(kind: str, name: str, value: Any) -> None:
        fit = Fit.from_dict(value) if not isinstance(value, dict) or "params" in value else None
        if fit is None:
            return
        params = "; ".join(f"{k}={v:.4g} [{fit.ci95[k][0]:.3g}, {fit.ci95[k][1]:.3g}]" for k, v in fit.params.items())
        extra = "; ".join(f"{k}={_num(v)}" for k, v in fit.extra.items())
        rows.append({"fit": kind, "group": name, "coefficients [95% CI]": params, "n": fit.n_points, "R2": fit.r2,
                     "CV error rms": fit.cv_rel_error_rms, "CV error max": fit.cv_rel_error_max,
                     "quality": fit.quality, "derived": extra})

    for kind in ("time_roofline", "energy_per_case", "batching", "offload_host"):
        for name, value in fits.get(kind, {}).items():
            add(kind, name, value)
    if fits.get("energy_roofline"):
        add("energy_roofline", "all cases", fits["energy_roofline"])
    for name, value in fits.get("frequency", {}).items():
        add("frequency_power", name, value["power"])
        add("frequency_time", name, value["time"])
    return pd.DataFrame(rows)


def markdown(profile: Any, pngs: list[str] | None = None) -> str:
    m = profile.meta
    t = profile.table
    lines = [f"# Energy profile `{profile.name}`", "",
             f"- device: {', '.join(m.get('device_names') or ['?'])}; measured {', '.join(m.get('dates', []))}; "
             f"clocks: {m.get('clocks')}",
             f"- device energy method: {', '.join(m.get('energy_methods', []))}",
             f"- energy methods of the points: {', '.join(m.get('host_energy_methods', []))}",
             f"- points used: {m.get('points_used')}; dropped by quality: {m.get('points_dropped') or 'none'}",
             f"- source: {m.get('source') or '-'}", ""]
    cols = ["kernel", "setting", "batch_size", "length", "time_per_call_s", "time_per_call_s_fit", "device_energy_per_token_j",
            "device_energy_per_call_j", "device_energy_per_call_j_fit", "host_energy_per_token_j", "quality"]
    lines += ["## Measured points (fit beside measured)", "", table(t[[c for c in cols if c in t]]), ""]
    fits = fit_rows(profile.fits)
    if not fits.empty:
        lines += ["## Fits", "", table(fits), ""]
        modelled = [x for x in m.get("energy_methods", []) if "model:" in x]
        if modelled:
            # A modelled energy is a power times a time: fits of it against time describe the
            # model, and an expert reading R2 = 1 must be told so.
            lines += [f"Device energy here is modelled ({', '.join(modelled)}), not metered: it is a power "
                      "times a CPU time, so the energy fits recover that power (p0_w) almost exactly by "
                      "construction. Their R2 and CV error describe the model, not the hardware's energy "
                      "per flop or byte.", ""]
    if m.get("skipped_fits"):
        lines += ["## Not fitted", ""] + [f"- {s}" for s in m["skipped_fits"]] + [""]
    for png in pngs or []:
        lines += [f"![{png}]({png})", ""]
    return "\n".join(lines)
