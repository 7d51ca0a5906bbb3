"""Markdown tables of a profile: what was measured, how, what was dropped, and every fit with its
intervals and errors (poor fits included, marked poor)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from bench.common.markdown import cell as _num
from bench.common.markdown import table
from bench.profile.compose import TARGET_REL_ERROR, summary
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

    for kind in ("time_roofline", "energy_per_case", "linear_time_roofline", "linear_energy", "batching",
                 "offload_host"):
        for name, value in fits.get(kind, {}).items():
            add(kind, name, value)
    for name, value in fits.get("layer_overhead", {}).items():
        for what, fit in value.items():
            add(f"layer_overhead_{what}", name, fit)
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


COMPOSITION_COLS = ["kernel", "batch_size", "seq_len", "context_len", "tokens", "kv_elements", "parts_measured",
                    "measured_time_s", "parts_time_s", "overhead_time_s", "composed_time_s", "time_rel_error",
                    "time_rel_error_fit_parts", "measured_energy_j", "parts_energy_j", "overhead_energy_j",
                    "composed_energy_j", "energy_rel_error", "energy_rel_error_fit_parts"]


def composition_markdown(profile: Any) -> str:
    """The composition check: each measured layer point against its parts' fitted costs plus the
    overhead fitted without it, the errors per layer case, and where every term comes from."""
    m, t = profile.meta, profile.composition
    methods = sorted(t["energy_method"].astype(str).unique())
    timing = t["time_method"].dropna()
    modelled = any("model:" in x for x in methods)
    device = (f"- device: {', '.join(m.get('device_names') or ['?'])}; measured {', '.join(m.get('dates', []))}; "
              f"software: {m.get('software') or '-'}; torch threads: {m.get('torch_threads') or '-'}")
    energy = (f"- energy: {', '.join(methods)}, of the layer points and of the part points (taken as measured, "
              "and those the parts' fits were made on)" + (" (modelled, not metered: a CPU time x a power per core, so the energy check "
                                "tests the composition of that model, not the hardware's energy)" if modelled else ""))
    composed = ("- composed = sum of the parts' costs (each part's measured point at the layer's shape, or "
                "interpolated in the batch between its measured neighbours, or else its fit; `parts_measured` "
                "counts the measured ones; sources below) + the layer overhead, its form chosen and its "
                "coefficients fitted on the other points of its case (nested leave one out): out of sample")
    planner = ("- `*_fit_parts`: the same points with every part from its fit (the linear and attention "
               "rooflines, fitted on the part points themselves) plus the same overhead: a composed serving step "
               "at a shape no part was measured at")
    lines = [f"# Composition check `{profile.name}`", "", device,
             f"- time: measured ({timing.iloc[0] if len(timing) else '?'})", energy, composed, planner,
             f"- target: at most {TARGET_REL_ERROR:.0%} on time and on energy", "",
             "## Errors per layer case", "", table(_percent(summary(t), ("rms", "worst"), "")), "",
             "## Errors per layer case, every part from its fit", "",
             table(_percent(summary(t, "_fit_parts"), ("rms", "worst"), "")), "",
             "## Overhead fits", "", table(_overhead_rows(profile.fits.get("layer_overhead", {}))), "",
             "## Points", "", table(_percent(t[[c for c in COMPOSITION_COLS if c in t]], ("rel_error", "_fit_parts"), "+")), "",
             "## Sources of the terms", ""]
    for (kernel, sources), group in t.groupby(["kernel", "sources"], sort=True):  # a part's source can differ by point
        length = group["seq_len"].where(group["phase"] == "prefill", group["context_len"])
        at = ", ".join(f"B={b:g} L={n:g}" for b, n in zip(group["batch_size"], length))
        lines += [f"- {kernel} ({at}): {sources}"]
    return "\n".join(lines) + "\n"


def _overhead_rows(overheads: dict[str, Any]) -> pd.DataFrame:
    """Each layer case's overhead fits: the form chosen, its coefficients, and each form's
    leave-one-out error on all the case's points (what chose it)."""
    rows = []
    for kernel, fits in sorted(overheads.items()):
        for what, fit in fits.items():
            fit = Fit.from_dict(fit)
            scores = fit.extra.get("form_loo_rel_error_rms", {})
            rows.append({"kernel": kernel, "of": what, "formula": fit.formula,
                         "coefficients [95% CI]": "; ".join(f"{k}={v:.4g} [{fit.ci95[k][0]:.3g}, {fit.ci95[k][1]:.3g}]"
                                                            for k, v in fit.params.items()),
                         "leave-one-out rms by form": "; ".join(f"{k}: {v:.1%}" for k, v in scores.items())})
    return pd.DataFrame(rows)


def _percent(df: pd.DataFrame, suffixes: tuple[str, ...], sign: str) -> pd.DataFrame:
    """Relative errors as percentages (`sign="+"` keeps their sign), for reading."""
    out = df.copy()
    for col in [c for c in out if c.endswith(suffixes)]:
        out[col] = [("" if pd.isna(v) else f"{v:{sign}.1%}") for v in out[col]]
    return out
