"""`task=plan`: the carbon-aware provisioning plan for a request trace on an hourly grid."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench import profiles
from bench.carbon import embodied, grid, plan, plan_report, serving, workload
from bench.carbon.planner import Pillars, PlanError
from bench.carbon.simulate import Slo
from bench.results import atomic_write_text


def inputs_of(cfg: Any) -> plan.PlanInputs:
    p, w = cfg.plan, cfg.workload
    return plan.PlanInputs(
        model=serving.PRESETS[p.model],
        workload=workload.load(w.path, w.time_column, w.prompt_column, w.output_column, w.offline_share, w.seed),
        intensity=grid.from_config(cfg.grid, p.hours),
        slo=Slo(p.slo_ttft_s, p.slo_tpot_s, p.slo_attainment),
        gpus=list(p.gpus), max_batches=list(p.max_batches), reference=p.reference,
        prefill_token_budgets=list(p.prefill_token_budgets),
        pillars=Pillars(**{k: bool(v) for k, v in p.pillars.items()}), pue=p.pue, deadline_h=w.deadline_h,
        lifetimes=embodied.Lifetimes(p.gpu_years, p.host_years), recycle_extra_gpu_years=p.recycle_extra_gpu_years,
        electricity_usd_per_kwh=p.electricity_usd_per_kwh,
        cpu_profile=profiles.load(p.cpu_profile, cfg.profiles_dir) if p.cpu_profile else None,
        host_spare_share=p.host_spare_share, dram_gb_per_s_per_socket=p.dram_gb_per_s_per_socket,
        embodied_level=p.embodied,
        gpu_profiles=measured_gpu_profiles(list(p.gpus), cfg.profiles_dir),
    )


def measured_gpu_profiles(gpus: list[str], root: str) -> dict[str, profiles.Profile]:
    """A measured profile of a GPU type, where one exists, replaces its datasheet model."""
    out = {}
    for gpu in gpus:
        found = profiles.for_device(str(embodied.gpus().loc[gpu, "name_match"]), root)
        if found is not None:
            out[gpu] = found
    return out


def run(cfg: Any) -> dict[str, Any]:
    try:
        result = plan.run(inputs_of(cfg))
    except PlanError as err:
        print(f"bench: plan: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    out = Path(cfg.plan.report_dir or Path(cfg.results_dir) / "plan")
    pngs = plan_report.plots(result, out)
    text = plan_report.markdown(result, [p.name for p in pngs])
    atomic_write_text(out / "plan.md", text)
    print(text)
    print(f"wrote {out / 'plan.md'} and {len(pngs)} plots")
    carbon = result.plans[0]
    return {"plan_total_kg": carbon.total_kg, "plan_attainment": carbon.attainment}
