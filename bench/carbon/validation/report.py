"""A device model held against a measurement file: the per-configuration table, its markdown, a plot,
and per SLO the max batch with the least energy per token that meets the p90 ITL SLO, as measured and
as predicted. Measured and predicted figures stay in their own columns, never combined."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.carbon import serving
from bench.carbon.inputs import embodied
from bench.carbon.validation import calibrate, measurements, replay
from bench.carbon.validation.measurements import ValidateConf
from bench.common.markdown import table as table_md

COLUMNS = ("max_num_seqs", "measured_energy_per_token_j", "predicted_energy_per_token_j", "measured_p90_itl_s",
           "predicted_p90_itl_s", "measured_avg_batch", "predicted_avg_batch")


@dataclass
class Validation:
    table: pd.DataFrame
    method: str  # the device model's label
    calibration: calibrate.Calibration | None  # when refitted on this file (in-sample)
    source: str  # the measurement file and what it is
    model: str
    gpu: str
    mismatch: str = ""  # what the measurements are of, where it is not the GPU replayed: a sensitivity check


def device_for(gpu: str, tp: int, mode: str) -> serving.DeviceModel:
    return serving.datasheet(gpu, tp, calibrated=mode != "none")


def calibrated_on(conf: ValidateConf, tp: int) -> bool:
    """Whether the committed calibration the GPU's device model uses was fitted on these very rows: its
    own (not one carried from another GPU type), from this file, for this model, at this GPU count,
    and the replay uses it (not `validate.calibration=none`). Replaying the rows as another model,
    GPU count or GPU type (by transfer) is not in-sample, though the calibration saw these
    measurements: a sensitivity check, not an independent validation."""
    if conf.calibration == "none":
        return False
    own = serving.device.calibration(conf.gpu)
    if own is None or own.get("source") != Path(conf.measurements).stem:
        return False
    return (serving.preset_key(own.get("model")) == serving.preset_key(conf.model)
            and int(own.get("num_gpus", 1)) == tp)


def validate(conf: ValidateConf) -> Validation:
    """Replay every row of `conf.measurements` with the GPU's current device model (or one refitted on
    the file, `conf.calibration=refit`) and tabulate measured against predicted."""
    rows = measurements.read(conf.measurements)
    model = serving.preset(conf.model)
    tps = sorted({int(t) for t in rows["num_gpus"]})
    scheds = []
    for tp in tps:
        part = rows[rows["num_gpus"] == tp]
        scheds += list(zip(part.index, replay.schedules(model, device_for(conf.gpu, tp, "none"), conf.gpu, part, conf)))
    scheds = [s for _, s in sorted(scheds, key=lambda x: x[0])]
    cal = None
    steady = np.array([s.steady for s in scheds])
    if conf.calibration == "refit":
        if len(tps) > 1:
            raise measurements.MeasurementsError("calibration=refit needs one num_gpus in the file")
        if not steady.any():
            raise measurements.MeasurementsError("calibration=refit needs a row whose replay has a steady state "
                                                 "(a backlog larger than its max batch + 1: validate.num_requests)")
        names = calibrate.fitted_parameters(conf.gpu)
        if int(steady.sum()) < len(names):  # each row is one operating point: fewer cannot pin them down
            raise measurements.MeasurementsError(
                f"calibration=refit fits {len(names)} parameters ({', '.join(names)}) and needs at least as many "
                f"comparable rows (max batches); {conf.measurements} has {int(steady.sum())}")
        # Fitted on the comparable rows only (its residuals and leave-one-out errors are of those rows).
        cal = calibrate.fit(model, conf.gpu, rows[steady].reset_index(drop=True),
                            [s for s, k in zip(scheds, steady) if k], Path(conf.measurements).stem, tps[0],
                            leave_one_out=True)
    preds, methods = [], []
    for (_, row), s in zip(rows.iterrows(), scheds):
        tp = int(row["num_gpus"])
        dev = cal.device(tp) if cal else device_for(conf.gpu, tp, conf.calibration)
        dev = replay.replay_device(dev, conf.gpu, conf)
        preds.append(replay.predict(s, serving.StepCost.of(model, dev)))
        in_sample = cal is not None or calibrated_on(conf, tp)
        methods.append(dev.method + (" (in-sample: calibrated on this file)" if in_sample else ""))
    t = pd.DataFrame({
        "max_num_seqs": rows["max_num_seqs"],
        "measured_energy_per_token_j": rows["energy_per_token_j"],
        "predicted_energy_per_token_j": [p.energy_per_token_j for p in preds],
        "measured_p90_itl_s": rows["p90_itl_ms"] / 1e3,
        "predicted_p90_itl_s": [p.p90_itl_s for p in preds],
        "measured_avg_batch": rows["avg_batch_size"],
        "predicted_avg_batch": [p.avg_batch for p in preds],
    })
    t["energy_rel_error"] = t.predicted_energy_per_token_j / t.measured_energy_per_token_j - 1
    t["p90_itl_rel_error"] = t.predicted_p90_itl_s / t.measured_p90_itl_s - 1
    if "avg_power_w" in rows:
        t["measured_power_w"] = rows["avg_power_w"]
        t["predicted_power_w"] = [p.power_w for p in preds]
    t["num_gpus"] = rows["num_gpus"]
    t["preemptions_predicted"] = [s.preemptions for s in scheds]
    t["steady_state_replayed"] = [s.steady for s in scheds]
    if cal is not None and "loo_energy_rel_error" in cal.residuals:
        for c in ("loo_energy_rel_error", "loo_p90_itl_rel_error"):  # NaN where a row was not fitted
            t[c] = np.nan
            t.loc[steady, c] = cal.residuals[c].to_numpy()
    t["method"] = methods

    def named(col: str) -> str:  # the values a column names (an empty cell names nothing)
        values = {str(v).strip() for v in rows.get(col, pd.Series([], dtype=object)).dropna() if str(v).strip()}
        return ", ".join(sorted(values)) or "?"

    label, gpus = named("model_id"), named("gpu_model")
    source = f"{conf.measurements} ({label} on {gpus}; measured GPU energy, steady state, per output token)"
    mismatch = ""
    if "model_id" in rows:
        # The measured model's id is one the preset names, or has the preset's family and size in it
        # (e.g. "llama", "8b" of Llama-3-8B): a loose check, enough to tell another model from a variant.
        parts = model.name.lower().split("-")
        ids = {h.lower() for h in model.hf_ids}
        if not all(str(m).lower() in ids or (parts[0] in str(m).lower() and parts[-1] in str(m).lower())
                   for m in rows["model_id"].dropna() if str(m).strip()):  # (an empty cell: of the preset)
            mismatch = f"the measurements are of {label}, replayed here as {conf.model}"
    if "gpu_model" in rows and not mismatch:
        from bench.carbon.inputs import embodied

        match = str(embodied.gpus().loc[conf.gpu, "name_match"]).lower()
        # (an empty cell is of the GPU replayed, as the replay takes it)
        if not all(match in str(g).lower() for g in rows["gpu_model"] if isinstance(g, str) and g.strip()):
            mismatch = f"the measurements are of {label} on {gpus}, replayed here on {conf.gpu}"
    return Validation(t, methods[0], cal, source, conf.model, conf.gpu, mismatch)


def comparable(t: pd.DataFrame) -> pd.DataFrame:
    """The rows whose replay had a steady-state window (`steady_state_replayed`): the only ones the
    worst errors and the SLO choices are of."""
    return t[t["steady_state_replayed"].astype(bool)] if "steady_state_replayed" in t else t


def choice(t: pd.DataFrame, slo_s: float, which: str) -> int | None:
    """The max batch with the least energy per token whose p90 ITL meets the SLO (`which`: measured or
    predicted), among the comparable rows."""
    t = comparable(t)
    ok = t[t[f"{which}_p90_itl_s"] <= slo_s]
    return None if ok.empty else int(ok.loc[ok[f"{which}_energy_per_token_j"].idxmin(), "max_num_seqs"])


def slo_lines(t: pd.DataFrame, slos_s: list[float]) -> list[str]:
    """One line per SLO (and per GPU count, where the file has several: a max batch is chosen among
    the same servers), or one saying there is nothing to choose from."""
    if comparable(t).empty:
        return ["- no comparable row: no max batch is chosen"]
    tps = sorted({int(x) for x in t["num_gpus"]}) if "num_gpus" in t else [1]
    out = []
    for tp in tps:
        part = t[t["num_gpus"] == tp] if "num_gpus" in t else t
        on = f"{tp} GPU(s), " if len(tps) > 1 else ""
        for slo in slos_s:
            m, p = choice(part, slo, "measured"), choice(part, slo, "predicted")
            verdict = "same" if m == p else "differs"
            m_s, p_s = ("none" if x is None else x for x in (m, p))
            out.append(f"- {on}p90 ITL <= {slo * 1e3:g} ms: least energy per token at max batch {m_s} (measured), "
                       f"{p_s} (predicted): {verdict}")
    return out


def markdown(v: Validation, slos_s: list[float], plot: str | None = None) -> str:
    t = v.table
    several = "num_gpus" in t and t["num_gpus"].nunique() > 1  # then rows are told apart by their GPUs too
    shown = t[[COLUMNS[0]] + (["num_gpus"] if several else []) + list(COLUMNS[1:]) + ["energy_rel_error", "p90_itl_rel_error"]
              + [c for c in ("loo_energy_rel_error", "loo_p90_itl_rel_error") if c in t]].copy()
    for c in shown.columns:
        if c.endswith("rel_error"):
            shown[c] = shown[c].map(lambda x: f"{x:+.1%}")
    kept = comparable(t)
    title = (f"# Sensitivity, not a validation: {v.model} on {v.gpu} ({v.mismatch})" if v.mismatch
             else f"# Validation: {v.model} on {v.gpu}")
    lines = [title, "",
             f"- measurements: {v.source}",
             f"- device model: `{v.method}`",
             ("- predicted: the serving simulator replaying each configuration as it ran (a backlog queued at once, "
              "the same max batch, vLLM's token budget and memory share, paged KV with preemption); workload "
              "assumptions in `validate.*` (prompt lengths are not in the file)"),
             (f"- worst |error|: energy per token {kept.energy_rel_error.abs().max():.1%}, p90 ITL "
              f"{kept.p90_itl_rel_error.abs().max():.1%} (predicted / measured - 1; comparable rows)" if len(kept)
              else "- worst |error|: none: no row is comparable (below)")]
    if "in-sample" in v.method:
        lines.append("- **in-sample**: the device model was calibrated on this same file"
                     + ("; the `loo_*` columns predict each row from a calibration without it (leave-one-out)"
                        if "loo_energy_rel_error" in t else
                        "" if v.calibration is not None else "; `validate.calibration=refit` adds a leave-one-out check"))
    unsteady = t.loc[~t["steady_state_replayed"], "max_num_seqs"].tolist()
    if unsteady:
        lines.append(f"- **not comparable** at max batch {', '.join(map(str, unsteady))}: the replay has no "
                     "steady-state window as ML.ENERGY defines it (its backlog, `validate.num_requests` or "
                     "ML.ENERGY's count for the sweeps it knows, is too small for this batch), so it is measured "
                     "from the last admission to the end, the drain included; these rows are left out of the worst "
                     "errors, the SLO choices and a refit. Set `validate.num_requests` to the count the "
                     "measurement ran")
    if v.calibration is not None:
        lines.append("- parameters: " + ", ".join(f"{k} {val:.4g}" for k, val in v.calibration.params.items()))
    lines += ["", table_md(shown), "", "## Energy-optimal max batch under the SLO", ""]
    lines += slo_lines(t, slos_s)
    if plot:
        lines += ["", f"![measured vs predicted]({plot})"]
    return "\n".join(lines) + "\n"


def plot(v: Validation, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = v.table
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (what, unit, scale) in zip(axes, [("energy_per_token_j", "J per output token", 1.0),
                                              ("p90_itl_s", "p90 ITL (ms)", 1e3), ("avg_batch", "mean batch", 1.0)]):
        ax.plot(t.max_num_seqs, t[f"measured_{what}"] * scale, "o-", label="measured")
        ax.plot(t.max_num_seqs, t[f"predicted_{what}"] * scale, "s--", label="predicted (model)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("max_num_seqs")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend()
    fig.suptitle(f"{v.model} on {v.gpu}: {v.method[:90]}", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gpu_of(rows: pd.DataFrame) -> str | None:
    """The catalogue GPU type a measurement file's `gpu_model` names (by the catalogue's name_match)."""
    names = {str(g) for g in rows.get("gpu_model", pd.Series([], dtype=str)).unique()}
    table = embodied.gpus()
    found = [gpu for gpu in table.index if any(str(table.loc[gpu, "name_match"]).lower() == n.lower() for n in names)]
    return found[0] if len(found) == 1 else None


def plan_section(path: str | None, model: str, gpus: list[str], slo_s: float, measured: tuple[str, ...] | list[str] = ()
                 ) -> list[str]:
    """The plan report's validation of the device model it used for the GPU type the file measured
    (the calibrated datasheet model; a GPU type the plan took from a measured profile is not validated here)."""
    if not path:
        return []
    lines = ["## Device-model validation", ""]
    rows = measurements.read(path)
    gpu = gpu_of(rows)
    if gpu is None or gpu not in gpus:
        named = ", ".join(map(str, rows.get("gpu_model", pd.Series(["?"])).unique()))
        return lines + [f"- {path}: its GPU ({named}) is not one of the plan's GPU types {gpus}; not validated", ""]
    if gpu in measured:
        return lines + [f"- {gpu}: the plan used a measured profile, not the datasheet model this file validates", ""]
    v = validate(ValidateConf(measurements=path, model=model, gpu=gpu))
    body = markdown(v, [slo_s]).split("\n", 2)[2]  # without the title
    return lines + body.splitlines() + [""]

