"""Planner benchmark: the time bars of `task=plan` on traces of very different shapes, and the
long-period methods (week blocks; for carbon the fleet search) against the exact whole-period MILP
(its peer: same model, same solver, no decomposition).

    python scripts/planner_benchmark.py [--out results/planner_bench] [--quick] [--blocks-only]

Each case runs `python -m bench task=plan` in a subprocess (as a user would, wall clock from the
start of the process) on a generated trace, and reads its `plans.csv`: time against the bar, the
largest solver gap, whether every feasible plan is SLO-verified and the carbon-optimal plan is at
or below every feasible baseline. The method check solves one 240-hour MILP per objective each way and
reports the objective and time ratios (240 h: longer whole solves take minutes). Results: `bench.csv`, `blocks.csv` and `README.md` in `--out`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BAR_24H_S, BAR_YEAR_S, GAP_BAR = 30.0, 120.0, 0.01


def trace(kind: str, seed: int = 0) -> pd.DataFrame:
    """Generated traces: arrival seconds, prompt and output tokens."""
    rng = np.random.default_rng(seed)
    if kind == "poisson_20k_1h":  # the bar's case: 20,000 requests in one hour
        t = np.sort(rng.uniform(0, 3600, 20_000))
        prompt, output = rng.lognormal(6.5, 1.0, len(t)), rng.lognormal(5.0, 0.8, len(t))
    elif kind == "long_prompts_1h":  # RAG-like: long prompts, short answers
        t = np.sort(rng.uniform(0, 3600, 4_000))
        prompt, output = rng.lognormal(8.0, 0.4, len(t)), rng.lognormal(3.5, 0.6, len(t))
    elif kind == "bursts_1h":  # on/off: 30 s bursts at 8x the mean rate every 4 minutes
        base = rng.uniform(0, 3600, 6_000)
        burst = np.concatenate([rng.uniform(s, s + 30, 700) for s in range(0, 3600, 240)])
        t = np.sort(np.concatenate([base, burst]))
        prompt, output = rng.lognormal(6.0, 1.0, len(t)), rng.lognormal(5.2, 0.7, len(t))
    elif kind == "diurnal_24h":  # a day with a 5x peak-to-trough swing
        rate = lambda h: 1500 + 1200 * np.sin((h - 9) / 24 * 2 * np.pi)  # noqa: E731 (requests per hour)
        t = np.sort(np.concatenate([h * 3600 + rng.uniform(0, 3600, rng.poisson(rate(h))) for h in range(24)]))
        prompt, output = rng.lognormal(6.8, 0.9, len(t)), rng.lognormal(5.0, 0.9, len(t))
    else:
        raise ValueError(kind)
    prompt = np.clip(np.round(prompt), 1, 7000).astype(int)
    output = np.clip(np.round(output), 1, 8192 - prompt).astype(int)
    return pd.DataFrame({"TIMESTAMP": t, "ContextTokens": prompt, "GeneratedTokens": output})


def run_plan(out: Path, name: str, *overrides: str) -> dict:
    run_dir = out / "runs" / name
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench", "task=plan", "sweep=none", f"results_dir={run_dir}",
                           *overrides], cwd=REPO, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    row = {"case": name, "wall_s": round(wall_s, 1), "exit": proc.returncode}
    if proc.returncode != 0:
        row["error"] = (proc.stderr.strip().splitlines() or [""])[-1][:200]
        return row
    plans = pd.read_csv(run_dir / "plan" / "plans.csv")
    main = plans[plans["kind"] != "ablation"]
    carbon = main.iloc[0]
    feasible_baselines = main.iloc[1:][main.iloc[1:]["feasible"]]
    row.update({
        "plans": len(plans), "feasible": int(plans["feasible"].sum()),
        "max_solver_gap": float(plans["solver_gap"].max(skipna=True)),
        # MILP plans whose gap is unknown (the performance baseline has no solve, so none).
        "unknown_gaps": int(plans[plans["plan"] != "performance-optimal"]["solver_gap"].isna().sum()),
        "hit_time_limit": bool(plans["solver_hit_time_limit"].any()),
        "carbon_feasible": bool(carbon["feasible"]),
        "carbon_at_or_below_feasible_baselines": bool((carbon["total_kg"] <= feasible_baselines["total_kg"] + 1e-9).all()),
        "no_more_nodes_than_gpus": bool((plans["nodes"] <= plans["gpus"]).all()),
    })
    return row


def block_check(hours: int = 240) -> pd.DataFrame:
    """One carbon MILP over `hours` solved whole and in week blocks (the year's method)."""
    from bench.carbon import serving
    from bench.carbon.inputs import grid, workload
    from bench.carbon.planning import fleets, solver
    from bench.carbon.planning import run as plan
    from bench.carbon.planning.demand import Demand
    from bench.carbon.serving.capacity import capacity
    from bench.carbon.serving.simulate import Slo
    from bench.profile import store

    rows = []
    for label, g in (("CISO", "ciso_2022"),):
        inputs = plan.PlanInputs(serving.PRESETS["llama3_8b"], workload.load(),
                                 grid.trace(g).window("2022-03-01 00:00+00:00", hours), Slo(),
                                 ["h100_sxm", "a100_sxm", "l4"], [16, 64, 256], "h100_sxm:64", plan.Pillars(),
                                 cpu_profile=store.load("cpu-amd-epyc-2core"))
        demand = Demand.of(inputs.workload, hours)
        caps = [capacity(c, inputs.model, demand.busiest_hour(), inputs.slo) for c in plan.candidates(inputs)]
        setting = plan.setting_of(inputs, caps, demand)
        hosts = {"reference": plan.host_capacity(inputs, plan.embodied.REFERENCE_HOST),
                 "reduced": plan.host_capacity(inputs, plan.embodied.reduced_host(setting.model_bytes, setting.kv_bytes, 8))}
        econ = plan.economics_for(inputs, hosts, inputs.pillars)
        for objective in ("carbon", "energy", "cost"):
            saved = solver.LONG_H, fleets.FLEET_SEARCH
            metric = {"carbon": "total_kg", "energy": "energy_kwh", "cost": "cost_usd"}[objective]
            try:
                solver.LONG_H = 10 ** 9
                t0 = time.perf_counter()
                whole = solver.solve(setting, objective, inputs.pillars, econ, "whole")
                t_whole = time.perf_counter() - t0
                solver.LONG_H = 0
                # The week blocks alone, then (carbon) the fleet search that long carbon plans take first.
                for method, search in (("blocks", False),) + ((("fleet search", True),) if objective == "carbon" else ()):
                    fleets.FLEET_SEARCH = search
                    t0 = time.perf_counter()
                    long = solver.solve(setting, objective, inputs.pillars, econ, method)
                    rows.append({"grid": label, "hours": hours, "objective": objective, "method": method,
                                 "whole": getattr(whole, metric), "whole_gap": whole.solver_gap,
                                 "whole_s": round(t_whole, 2), "long": getattr(long, metric),
                                 "long_gap_vs_bound": long.solver_gap, "long_s": round(time.perf_counter() - t0, 2),
                                 "long_over_whole": getattr(long, metric) / getattr(whole, metric)})
            finally:
                solver.LONG_H, fleets.FLEET_SEARCH = saved
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "results" / "planner_bench"))
    ap.add_argument("--quick", action="store_true", help="skip the year-long runs")
    ap.add_argument("--blocks-only", action="store_true", help="rerun only the long-period method table")
    args = ap.parse_args()
    out = Path(args.out)
    (out / "traces").mkdir(parents=True, exist_ok=True)
    rows = []
    if args.blocks_only:  # the method table alone; the time bars as the last run left them
        table = pd.read_csv(out / "bench.csv")
        kinds = ()
    else:
        kinds = ("poisson_20k_1h", "long_prompts_1h", "bursts_1h", "diurnal_24h")
    for kind in kinds:
        path = out / "traces" / f"{kind}.csv"
        trace(kind).to_csv(path, index=False)
        rows.append({**run_plan(out, f"{kind}/24h", f"workload.path={path}", "plan.hours=24"), "bar_s": BAR_24H_S})
    if not args.blocks_only:
        rows.append({**run_plan(out, "shipped/24h", "plan.hours=24"), "bar_s": BAR_24H_S})
    if not args.quick and not args.blocks_only:  # the bar's case: the 20,000-request hour over a year of hourly grid data
        path = out / "traces" / "poisson_20k_1h.csv"
        rows.append({**run_plan(out, "poisson_20k_1h/8760h", f"workload.path={path}", "plan.hours=8760",
                                "grid.start=2022-01-01"), "bar_s": BAR_YEAR_S})
        for kind in ("long_prompts_1h", "bursts_1h"):  # one-hour traces of other shapes, held to the same bar
            path = out / "traces" / f"{kind}.csv"
            rows.append({**run_plan(out, f"{kind}/8760h", f"workload.path={path}", "plan.hours=8760",
                                    "grid.start=2022-01-01"), "bar_s": BAR_YEAR_S})
        # Beyond the bar's case: a multi-hour trace (a diurnal day) replayed over the year, held to the same bar.
        path = out / "traces" / "diurnal_24h.csv"
        rows.append({**run_plan(out, "diurnal_24h/8760h", f"workload.path={path}", "plan.hours=8760",
                                "grid.start=2022-01-01"), "bar_s": BAR_YEAR_S})
    if not args.blocks_only:
        table = pd.DataFrame(rows)
        table["time_over_bar"] = table["wall_s"] / table["bar_s"]
        table.to_csv(out / "bench.csv", index=False)
    blocks = block_check()
    blocks.to_csv(out / "blocks.csv", index=False)
    from importlib.metadata import version

    import scipy
    import torch

    from bench.common.markdown import table as table_md
    env = (f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores, Python "
           f"{platform.python_version()}, highspy {version('highspy')} (HiGHS), scipy {scipy.__version__}, torch {torch.__version__}, "
           f"{dt.date.today().isoformat()}")
    md = ["# Planner benchmark", "", f"Machine: {env}. Command: `python scripts/planner_benchmark.py{''.join(' ' + a for a in sys.argv[1:])}`.", "",
          "## Time bars (`task=plan`, wall clock of the whole process)", "",
          table_md(table), "",
          "## Long-period methods against the whole-period MILP (240 h: week blocks, two of 120 h, or for energy and cost, whose inputs repeat hourly, one of 240 h (`block_edges`); and for carbon the fleet search, each fleet solved whole; a whole solve can stop at its time limit, so compare `whole_gap`; `long_gap_vs_bound` is the bound-backed figure)", "",
          table_md(blocks), ""]
    (out / "README.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
