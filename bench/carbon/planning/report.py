"""The plan report: markdown tables and PNG plots (carbon breakdown bars; hourly intensity with
the offline schedule)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.carbon.inputs import host_power  # noqa: E402
from bench.carbon.planning import accounting  # noqa: E402
from bench.carbon.planning.baselines import BASELINES  # noqa: E402
from bench.carbon.planning.pillars import host_for  # noqa: E402
from bench.carbon.planning.run import PlanRun, replica_gpus  # noqa: E402
from bench.carbon.planning.setting import offline_on_cpus  # noqa: E402
from bench.common.files import atomic_save_figure as _save  # noqa: E402
from bench.common.markdown import table as table_md  # noqa: E402


def _fleet(plan) -> str:
    parts = [f"{int(n)} x {c.candidate.name}" for n, c in zip(plan.provisioned, plan.candidates) if n > 0]
    return ", ".join(parts) or "none"


PLANS_CSV_COLUMNS = ["plan", "kind", "feasible", "attainment", "worst_hour_attainment", "gpus", "nodes",
                     "operational_kg", "embodied_gpu_kg", "embodied_host_kg", "total_kg", "energy_kwh", "cost_usd",
                     "solver_gap", "solver_hit_time_limit"]


def plans_csv(run: PlanRun) -> pd.DataFrame:
    """One row per plan: the chosen one, each baseline, each ablation step (`plans.csv`)."""
    rows = []
    for p in run.plans + run.ablation:
        rows.append({"plan": p.name, "kind": p.kind, "feasible": p.feasible, "attainment": p.attainment,
                     "worst_hour_attainment": p.worst_hour_attainment, "gpus": p.gpus, "nodes": p.node_count,
                     "operational_kg": p.operational_kg, "embodied_gpu_kg": p.embodied_gpu_kg,
                     "embodied_host_kg": p.embodied_host_kg, "total_kg": p.total_kg, "energy_kwh": p.energy_kwh,
                     "cost_usd": p.cost_usd, "solver_gap": p.solver_gap, "solver_hit_time_limit": p.solver_hit_time_limit})
    return pd.DataFrame(rows, columns=PLANS_CSV_COLUMNS)


def plans_table(run: PlanRun) -> pd.DataFrame:
    q, metric = run.inputs.slo.percentile, {"mean_tpot": "TPOT", "itl": "ITL"}[run.inputs.slo.tpot_metric]
    rows = []
    for p in run.plans:
        s = run.spread[p.name]
        rows.append({"plan": p.name, "meets SLO": "yes" if p.feasible else "NO (infeasible)", "fleet": _fleet(p),
                     "GPUs": p.gpus, "nodes": p.node_count, "operational kgCO2e": p.operational_kg,
                     "embodied GPU kg": p.embodied_gpu_kg, "embodied host kg": p.embodied_host_kg,
                     "total kgCO2e": p.total_kg, "total low-high": f"{s['low']:.3g}-{s['high']:.3g}",
                     "energy kWh": p.energy_kwh, "GPU energy from": p.energy_method.split(":")[0],
                     "cost USD": p.cost_usd, "attainment (pooled)": p.attainment,
                     "worst hour": p.worst_hour_attainment, "worst replica": p.worst_replica_attainment,
                     f"TTFT p50/p{q:g} s": f"{p.latency.get('ttft_p50_s', float('nan')):.3g}/{p.latency.get('ttft_tail_s', float('nan')):.3g}",
                     f"{metric} p50/p{q:g} s": f"{p.latency.get('tpot_p50_s', float('nan')):.3g}/{p.latency.get('tpot_tail_s', float('nan')):.3g}",
                     "offline on CPU": round(offline_on_cpus(p)),  # requests
                     "solver gap": "-" if np.isnan(p.solver_gap) else f"{p.solver_gap:.2%}" + (" (time limit)" if p.solver_hit_time_limit else "")})
    return pd.DataFrame(rows)


def headline(run: PlanRun) -> list[str]:
    """Savings only between plans that meet the SLO; the others are listed, never ranked."""
    carbon = run.plans[0]
    lines = []
    if not carbon.feasible:
        lines.append(f"- no carbon-optimal plan meets the SLO (best verified: {carbon.attainment:.2%} pooled, worst hour "
                     f"{carbon.worst_hour_attainment:.2%}): no saving is claimed")
    for other in run.plans[1:]:
        if not other.feasible:
            lines.append(f"- {other.name} misses the SLO (worst hour {other.worst_hour_attainment:.2%}): infeasible, "
                         "not compared")
        elif carbon.feasible:
            saving = 1 - carbon.total_kg / other.total_kg
            lines.append(f"- carbon-optimal {'saves' if saving >= 0 else 'adds'} {abs(saving):.1%} of the total carbon "
                         f"of {other.name} ({carbon.total_kg:.3g} vs {other.total_kg:.3g} kgCO2e; both meet the SLO)")
    return lines


def reuse_lines(run: PlanRun) -> list[str]:
    """What a host CPU spends on an offline request against the chosen plan's GPUs, and the
    break-even below which Reuse would take offline work (host cores are there anyway: only the
    marginal energy counts)."""
    carbon = run.plans[0]
    host = run.host_capacity.get("reduced" if carbon.pillars.levers().reduced_host else "reference")
    used = [c for c, n in zip(carbon.candidates, carbon.provisioned) if n > 0]
    if host is None or not host.feasible or not used or run.inputs.cpu_profile is None:
        return []
    e_gpu = min(c.dynamic_j_per_request for c in used)
    methods = ", ".join(run.inputs.cpu_profile.meta.get("energy_methods", [])) or "unknown"
    served = offline_on_cpus(carbon)
    return [f"- Reuse: host CPUs spend {host.dynamic_j_per_request:.4g} J per offline request ({methods}; "
            f"{host.requests_per_hour:.4g} requests/h per node), the chosen GPUs {e_gpu:.4g} J: Reuse wins below "
            f"{e_gpu:.4g} J per request, {e_gpu / host.dynamic_j_per_request:.2g}x the host figure; the plan puts "
            f"{served:.0f} offline requests on CPUs", ""]


def sensitivity_table(run: PlanRun) -> pd.DataFrame:
    """The plans that meet the SLO, their fleets and schedules held, counted again under other
    embodied figures, PUE and grid intensity: does the carbon-optimal one stay the lowest?"""
    plans = [p for p in run.plans if p.feasible]
    if not plans:
        return pd.DataFrame()
    pue = run.inputs.pue
    scenarios = {"as planned": lambda p: p.total_kg,
                 "embodied low": lambda p: run.spread[p.name]["low"],
                 "embodied high": lambda p: run.spread[p.name]["high"]}
    for label, factor in ((f"PUE {max(1.0, pue * 0.9):.3g}", max(1.0, pue * 0.9) / pue), (f"PUE {pue * 1.1:.3g}", 1.1),
                          ("grid -20%", 0.8), ("grid +20%", 1.2)):
        scenarios[label] = (lambda f: lambda p: p.operational_kg * f + p.embodied_gpu_kg + p.embodied_host_kg)(factor)
    rows = []
    for label, total in scenarios.items():
        best = min(plans, key=total)
        carbon = plans[0] if plans[0].name == "carbon-optimal" else None
        rows.append({"scenario": label, "lowest plan": best.name, "its kgCO2e": total(best),
                     "carbon-optimal kgCO2e": total(carbon) if carbon else float("nan"),
                     "choice changes": "no" if carbon is not None and best is carbon else "yes"})
    return pd.DataFrame(rows)


def ablation_table(run: PlanRun) -> pd.DataFrame:
    base = run.ablation[0]
    return pd.DataFrame([{"pillars": p.name, "meets SLO": "yes" if p.feasible else "NO", "fleet": _fleet(p),
                          "total kgCO2e": p.total_kg,
                          "saving vs none": (1 - p.total_kg / base.total_kg) if p.feasible and base.feasible else "-",
                          "operational kg": p.operational_kg, "embodied kg": p.embodied_gpu_kg + p.embodied_host_kg,
                          "attainment (pooled)": p.attainment, "worst hour": p.worst_hour_attainment}
                         for p in run.ablation])


def capacity_table(run: PlanRun) -> pd.DataFrame:
    rows = []
    for c in run.capacities + [h for h in run.host_capacity.values() if h is not None]:
        rows.append({"candidate": c.candidate.name, "method": c.candidate.device.method,
                     "requests/h per replica": c.requests_per_hour, "J per request": c.dynamic_j_per_request,
                     "active W": c.active_w, "TTFT p50 s": c.ttft_p50_s, "TPOT p50 s": c.tpot_p50_s,
                     "attainment": c.attainment})
    return pd.DataFrame(rows)


def device_model_lines(i: Any) -> list[str]:
    """Per GPU type: the measured profile in use, or the one the plan would need (never a
    profile that was not measured: the datasheet model stands in, labelled)."""
    from bench.carbon.inputs import embodied

    lines = ["## Device models", ""]
    for gpu in i.gpus:
        profile = i.gpu_profiles.get(gpu)
        if profile is not None:
            lines.append(f"- {gpu}: measured profile `{profile.name}` ({', '.join(profile.meta.get('device_names', []))}, "
                         f"{', '.join(profile.meta.get('dates', []))})")
        else:
            match = embodied.gpus().loc[gpu, "name_match"]
            from bench.carbon import serving

            tp = replica_gpus(i.model.weight_bytes, gpu)  # the method of the replica the plan runs
            lines.append(f"- {gpu}{f' x {tp}' if tp > 1 else ''}: `{serving.datasheet(gpu, tp).method}`; no measured profile of a GPU named like '{match}' in "
                         "`profiles/`. To use one, on that GPU run `python -m bench -m sweep=default` then "
                         "`python -m bench task=fit results=results/default hardware=<name>`")
    split = [gpu for gpu in i.gpus if replica_gpus(i.model.weight_bytes, gpu) > 1]
    if getattr(i.model, "experts", 0) and split:
        lines.append(f"- caution: {i.model.name} is a mixture of experts on tensor-parallel replicas ({', '.join(split)}). "
                     "Its step model held within 15% on one GPU, but on held-out multi-GPU servers (ML.ENERGY, H100) "
                     "it predicted steps 18-49% faster and energy up to 46% lower than measured (README); do not "
                     "trust these replicas' figures without a measurement")
    if getattr(i.model, "mamba_layers", 0):
        lines.append(f"- caution: {i.model.name} has Mamba-2 layers. Held out on ML.ENERGY's one-H100 server, this "
                     "step model predicted p90 inter-token gaps 12-23% short up to 32 requests and 2.3-3.8x short from "
                     "64 on (slow prefill steps of the Mamba layers, not modelled), and energy per token up to 41% low "
                     "(README); do not trust its figures without a measurement")
    if i.cpu_profile is not None:
        methods = ", ".join(i.cpu_profile.meta.get("energy_methods", [])) or "unknown"
        kind = "a model, not a measurement" if "model:" in methods else "measured"
        lines.append(f"- host CPUs (Reuse): profile `{i.cpu_profile.name}` (time measured; energy {methods}: {kind}), "
                     "scaled to the host's cores")
    return lines + [""]


def host_power_of(run: PlanRun, plan) -> dict:
    """Per GPU type of `plan`, the modelled power of one node's host (its levers choose the host),
    its CPUs busy at the share the spare-core assumption leaves (`1 - host_spare_share`)."""
    levers = plan.pillars.levers()
    setting = run.setting
    if setting is None:
        return {}
    return {t: host_power.of(host_for(setting, t, levers), 1.0 - run.inputs.host_spare_share) for t in plan.node_types}


def markdown(run: PlanRun, pngs: list[str]) -> str:
    i = run.inputs
    carbon = run.plans[0]
    d = run.demand
    if d is None or d.replayed:
        trace = (f"the {d.trace_hours}-hour trace is replayed over the {d.hours}-hour period (hour h is trace hour h mod "
                 f"{d.trace_hours})" if d is not None else "the trace is replayed every hour")
    else:
        trace = f"the trace is used hour by hour (its first {d.hours} of {d.trace_hours} hours)"
    if d is not None and d.tiled > 1:
        trace = f"the trace, shorter than an hour, is tiled {d.tiled} times to fill one; " + trace
    scope = "in every hour" if i.slo_scope == "hour" else "over the whole period"
    lines = [f"# Carbon-aware plan: {i.model.name} on {i.workload.label}", "",
             f"- grid: {i.intensity.label}, {len(i.intensity.g_per_kwh)} h from {i.intensity.start_utc} "
             f"(mean {np.mean(i.intensity.g_per_kwh):.0f} g/kWh, {i.intensity.gaps_filled} gaps in the source filled by interpolation), PUE {i.pue:g}; "
             f"the series counts {i.intensity.scope}" + ("" if i.intensity.scope != "unstated" else
                                                         " emissions (direct or lifecycle: the source does not say)"),
             f"- SLO: TTFT <= {i.slo.ttft_s:g} s and "
             + ("mean TPOT" if i.slo.tpot_metric == "mean_tpot" else f"p{i.slo.percentile:g} inter-token latency")
             + f" <= {i.slo.tpot_s:g} s for {i.slo.attainment:.0%} of online requests {scope} "
             f"(`plan.slo_scope={i.slo_scope}`, `plan.slo_tpot_metric={i.slo.tpot_metric}`); offline deadline {i.deadline_h} h",
             f"- {trace}; GPU energy from the candidates' device "
             "models (see `method`: `model:datasheet+calibrated:<source>` is the datasheet's rates at the achievable "
             "fractions measured here, with overhead and power calibrated on the named server measurements, and "
             "`(transfer ...)` a GPU that takes another's calibration; `model:datasheet` alone is peak rates with the "
             "Splitwise power model; none is a measurement); plans are counted on GPU energy (x PUE), plus Reuse's "
             "host-CPU work at the CPU profile's method; the host power of GPU nodes is a labelled model shown only in "
             "the node scope of energy per token; parked replicas are off",
             f"- a plan counts only if its whole-fleet simulation meets the SLO: each hour's requests routed over all of "
             f"its active replicas (`plan.routing={i.routing}`), every replica simulated, offline work submitted evenly "
             "over the hour it is scheduled in; plans that miss it are infeasible, listed and never ranked; TTFT/TPOT "
             "percentiles are those of the worst hour",
             "- baselines: " + "; ".join(f"{b.name}: {b.says}" for b in BASELINES),
             "- SM clock is a Rightsize choice only for GPU types whose measured profile has frequency fits "
             "(`sweep=frequency`, then `task=fit`); datasheet models run at their default clocks", ""]
    lines += headline(run)
    lines += [""] + device_model_lines(i) + reuse_lines(run)
    methods = sorted({p.energy_method for p in run.plans + run.ablation})
    lines += ["## Plans", "", table_md(plans_table(run)), "",
              f"GPU energy of the plans (column `GPU energy from`): {'; '.join(methods)}; the MILP chose on its "
              "model. Host CPUs: the CPU profile's method (above).", "", "## Pillars added one at a time", "",
              table_md(ablation_table(run)), "",
              "## Per request (carbon-optimal plan; each request's share of every step by tokens processed)", "",
              table_md(accounting.per_request(carbon, i.intensity.g_per_kwh, i.pue)), "",
              "## Energy per token by scope (carbon-optimal plan)", "", table_md(accounting.scopes(carbon, i.pue, host_power_of(run, carbon))), "",
              "## Sensitivity (the plans that meet the SLO, fleets and schedules held, counted again)", "",
              table_md(sensitivity_table(run)), "", "## Candidates (one replica each)", "", table_md(capacity_table(run)), ""]
    lines += [f"- {p.name}: {'; '.join(p.notes)}" for p in run.plans + run.ablation]
    lines += [""] + [f"![{p}]({p})" for p in pngs] + [""]
    return "\n".join(lines)


def plots(run: PlanRun, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = []
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [p.name for p in run.plans] + [f"abl. {p.name}" for p in run.ablation]
    all_plans = run.plans + run.ablation
    op = np.array([p.operational_kg for p in all_plans])
    eg = np.array([p.embodied_gpu_kg for p in all_plans])
    eh = np.array([p.embodied_host_kg for p in all_plans])
    x = np.arange(len(all_plans))
    ax.bar(x, op, label="operational")
    ax.bar(x, eg, bottom=op, label="embodied GPU")
    ax.bar(x, eh, bottom=op + eg, label="embodied host")
    ax.set_xticks(x, names, rotation=40, ha="right", fontsize=8)
    ax.set(ylabel="kgCO2e over the period", title="carbon by plan")
    ax.legend()
    fig.tight_layout()
    made.append(_save(fig, out / "plan_carbon.png"))

    carbon = run.plans[0]
    fig, ax1 = plt.subplots(figsize=(8, 4))
    hours = np.arange(len(run.inputs.intensity.g_per_kwh))
    ax1.plot(hours, run.inputs.intensity.g_per_kwh, "k-", label="grid intensity")
    ax1.set(xlabel="hour of the period", ylabel="gCO2e/kWh", title="hourly intensity and the offline schedule")
    ax2 = ax1.twinx()
    # Stacked step areas, one artist each: a bar per hour is a patch per hour (a year's 17,520
    # patches took 20 s to draw).
    edges = np.arange(len(hours) + 1)  # hour h spans [h, h + 1)
    gpu = np.append(carbon.offline_gpu.sum(axis=1), 0.0)
    cpu = np.append(carbon.offline_cpu, 0.0)
    ax2.fill_between(edges, 0.0, gpu, step="post", alpha=0.4, label="offline on GPUs")
    ax2.fill_between(edges, gpu, gpu + cpu, step="post", alpha=0.4, label="offline on CPUs")
    ax2.set_ylabel("offline requests served")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    made.append(_save(fig, out / "plan_schedule.png"))
    return made
