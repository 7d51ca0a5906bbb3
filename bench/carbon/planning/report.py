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

from bench.carbon.planning.run import PlanRun  # noqa: E402
from bench.common.files import atomic_save_figure as _save  # noqa: E402
from bench.common.markdown import table as table_md  # noqa: E402


def _fleet(plan) -> str:
    parts = [f"{int(n)} x {c.candidate.name}" for n, c in zip(plan.provisioned, plan.candidates) if n > 0]
    return ", ".join(parts) or "none"


def plans_table(run: PlanRun) -> pd.DataFrame:
    rows = []
    for p in run.plans:
        s = run.spread[p.name]
        rows.append({"plan": p.name, "fleet": _fleet(p), "operational kgCO2e": p.operational_kg,
                     "embodied GPU kg": p.embodied_gpu_kg, "embodied host kg": p.embodied_host_kg,
                     "total kgCO2e": p.total_kg, "total low-high": f"{s['low']:.3g}-{s['high']:.3g}",
                     "energy kWh": p.energy_kwh, "cost USD": p.cost_usd, "SLO attainment (simulated)": p.attainment,
                     "TTFT p50/p99 s": f"{p.latency.get('ttft_p50_s', float('nan')):.3g}/{p.latency.get('ttft_p99_s', float('nan')):.3g}",
                     "TPOT p50/p99 s": f"{p.latency.get('tpot_p50_s', float('nan')):.3g}/{p.latency.get('tpot_p99_s', float('nan')):.3g}",
                     "offline on CPU": float(p.offline_cpu.sum())})
    return pd.DataFrame(rows)


def ablation_table(run: PlanRun) -> pd.DataFrame:
    base = run.ablation[0].total_kg
    return pd.DataFrame([{"pillars": p.name, "fleet": _fleet(p), "total kgCO2e": p.total_kg,
                          "saving vs none": 1 - p.total_kg / base, "operational kg": p.operational_kg,
                          "embodied kg": p.embodied_gpu_kg + p.embodied_host_kg,
                          "SLO attainment (simulated)": p.attainment} for p in run.ablation])


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
            lines.append(f"- {gpu}: `model:datasheet`; no measured profile of a GPU named like '{match}' in "
                         "`profiles/`. To use one, on that GPU run `python -m bench -m sweep=default` then "
                         "`python -m bench task=fit results=results/default hardware=<name>`")
    if i.cpu_profile is not None:
        lines.append(f"- host CPUs (Reuse): measured profile `{i.cpu_profile.name}`, scaled to the host's cores")
    return lines + [""]


def markdown(run: PlanRun, pngs: list[str]) -> str:
    i = run.inputs
    carbon = run.plans[0]
    lines = [f"# Carbon-aware plan: {i.model.name} on {i.workload.label}", "",
             f"- grid: {i.intensity.label}, {len(i.intensity.g_per_kwh)} h from {i.intensity.start_utc} "
             f"(mean {np.mean(i.intensity.g_per_kwh):.0f} g/kWh, {i.intensity.gaps_filled} gaps in the source filled by interpolation), PUE {i.pue:g}",
             f"- SLO: TTFT <= {i.slo.ttft_s:g} s and TPOT <= {i.slo.tpot_s:g} s for {i.slo.attainment:.0%} of online "
             f"requests; offline deadline {i.deadline_h} h",
             "- the one-hour trace is replayed every hour of the period; GPU energy from the candidates' device "
             "models (see `method`: `model:datasheet` is peak datasheet rates with the Splitwise power model, not a "
             "measurement); host power of GPU nodes is not modelled; parked replicas are off",
             "- every plan's SLO attainment is simulated over the whole trace hour at the load the plan gives each "
             "replica, not assumed; TTFT/TPOT percentiles are those of the worst hour",
             "- SM clock is a Rightsize choice only for GPU types whose measured profile has frequency fits "
             "(`sweep=frequency`, then `task=fit`); datasheet models run at their default clocks", ""]
    for other in run.plans[1:]:
        saving = 1 - carbon.total_kg / other.total_kg
        lines.append(f"- carbon-optimal {'saves' if saving >= 0 else 'adds'} {abs(saving):.1%} of the total carbon of "
                     f"{other.name} ({carbon.total_kg:.3g} vs {other.total_kg:.3g} kgCO2e)")
    lines += [""] + device_model_lines(i)
    lines += ["## Plans", "", table_md(plans_table(run)), "", "## Pillars added one at a time", "",
              table_md(ablation_table(run)), "", "## Candidates (one replica each)", "", table_md(capacity_table(run)), ""]
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
    ax2.bar(hours, carbon.offline_gpu.sum(axis=1), alpha=0.4, label="offline on GPUs")
    ax2.bar(hours, carbon.offline_cpu, bottom=carbon.offline_gpu.sum(axis=1), alpha=0.4, label="offline on CPUs")
    ax2.set_ylabel("offline requests served")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    made.append(_save(fig, out / "plan_schedule.png"))
    return made
