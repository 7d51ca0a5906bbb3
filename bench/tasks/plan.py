"""`task=plan`: the carbon-aware provisioning plan for a request trace on an hourly grid."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.carbon import serving
from bench.carbon.inputs import embodied, grid, workload
from bench.carbon.planning import report as plan_report
from bench.carbon.planning import run as plan
from bench.carbon.planning.options import default_solve_budget_s
from bench.carbon.planning.pillars import Pillars
from bench.carbon.serving.device import measured_profiles
from bench.carbon.serving.simulate import Slo
from bench.carbon.validation import report as validation_report
from bench.common.files import atomic_write_text
from bench.common.interrupt import stop_if_interrupted
from bench.profile import store

if TYPE_CHECKING:
    from bench.cli.schema import BenchConf


def inputs_of(cfg: "BenchConf") -> plan.PlanInputs:
    p, w = cfg.plan, cfg.workload
    model = serving.preset(p.model)
    return plan.PlanInputs(
        model=model,
        workload=workload.fit_to_context(workload.from_config(w), model.context_tokens, w.over_context),
        intensity=grid.from_config(cfg.grid, p.hours),
        slo=Slo(p.slo_ttft_s, p.slo_tpot_s, p.slo_attainment, p.slo_tpot_metric, p.slo_percentile),
        gpus=list(p.gpus), max_batches=list(p.max_batches), reference=p.reference,
        prefill_token_budgets=list(p.prefill_token_budgets),
        pillars=Pillars(**dataclasses.asdict(p.pillars)), pue=p.pue, deadline_h=w.deadline_h,
        lifetimes=embodied.Lifetimes(p.gpu_years, p.host_years), recycle_extra_gpu_years=p.recycle_extra_gpu_years,
        electricity_usd_per_kwh=p.electricity_usd_per_kwh,
        cpu_profile=store.load(p.cpu_profile, cfg.profiles_dir) if p.cpu_profile else None,
        host_spare_share=p.host_spare_share, dram_gb_per_s_per_socket=p.dram_gb_per_s_per_socket,
        embodied_level=p.embodied, slo_scope=p.slo_scope, routing=p.routing, workers=p.workers,
        solve_budget_s=float(p.solve_budget_s) if p.solve_budget_s is not None else default_solve_budget_s(p.hours),
        gpu_profiles=measured_profiles(list(p.gpus), cfg.profiles_dir),
    )


# The plan.md this process wrote, once it has: a Ctrl-C after it (while the report prints) is told apart.
WRITTEN: Path | None = None


def run(cfg: "BenchConf") -> dict[str, Any]:
    global WRITTEN
    WRITTEN = None
    result = plan.run(inputs_of(cfg))  # a PlanError (no plan can meet the SLO) is a refusal: one line, exit 3
    stop_if_interrupted()
    out = Path(cfg.plan.report_dir or Path(cfg.results_dir) / "plan")
    pngs = plan_report.plots(result, out)
    text = plan_report.markdown(result, [p.name for p in pngs])
    section = validation_report.plan_section(cfg.plan.validation_measurements, cfg.plan.model, list(cfg.plan.gpus),
                                             cfg.validate.itl_slo_s, measured=list(result.inputs.gpu_profiles))
    if section:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    stop_if_interrupted()
    atomic_write_text(out / "plans.csv", plan_report.plans_csv(result).to_csv(index=False))
    atomic_write_text(out / "plan.md", text)
    WRITTEN = out / "plan.md"
    print(text)
    print(f"wrote {out / 'plan.md'}, {out / 'plans.csv'} and {len(pngs)} plots")
    carbon = result.plans[0]
    return {"plan_total_kg": carbon.total_kg, "plan_attainment": carbon.attainment, "plan_feasible": carbon.feasible}
