"""The planning run end to end on a slice of the shipped trace: every plan's SLO attainment is
simulated, an impossible SLO names the closest configuration, and `task=plan` prints a report."""
import dataclasses
import math
from pathlib import Path

import os

import numpy as np
import pandas as pd
import pytest

from bench.profile import build as profiles
from bench.profile import store
from bench.carbon import serving
from bench.carbon.inputs import grid, workload
from bench.carbon.planning import run as plan
from bench.carbon.planning import setting as planner
from bench.carbon.planning.errors import PlanError
from bench.carbon.serving.simulate import Slo

REPO = Path(__file__).resolve().parents[3]


def inputs(slo=Slo(), minutes=10):
    w = workload.load()
    w = w.subset(w.arrival_s < minutes * 60)
    w = workload.Workload(w.arrival_s, w.prompt, w.output, w.offline, w.label)
    return plan.PlanInputs(serving.PRESETS["llama3_8b"], w, grid.trace("ciso_2022").window("2022-07-15 00:00+00:00", 6),
                           slo, ["h100_sxm", "l4"], [32], "h100_sxm:32", planner.Pillars(),
                           cpu_profile=store.load("cpu-amd-epyc-2core"))


@pytest.fixture(scope="module")
def run():
    return plan.run(inputs())


def test_every_plan_is_verified_on_the_whole_fleet_and_reports_it(run):
    from bench.carbon.planning.verify import verify

    assert [p.name for p in run.plans] == ["carbon-optimal", "performance-optimal", "energy-optimal", "cost-optimal"]
    assert [p.kind for p in run.plans] == ["chosen", "baseline", "baseline", "baseline"]
    assert [p.name for p in run.ablation] == ["none", "+rightsize", "+reduce", "+reuse", "+recycle", "+shift"]
    i = run.inputs
    for p in run.plans + run.ablation:
        assert any("verified by whole-fleet simulation" in n for n in p.notes)
    for p in (run.plans[0], run.plans[1], run.ablation[0]):  # chosen, static baseline, ablation: one of each kind
        again = verify(p, run.demand, i.model, i.slo, i.routing, {})  # a fresh simulation gives the reported figures
        assert p.attainment == pytest.approx(again.attainment) and p.worst_hour_attainment == pytest.approx(again.worst_hour)
        assert p.feasible == (again.worst_hour >= i.slo.attainment)  # slo_scope=hour: every hour meets it
    for p in run.plans:  # the spread at the default level is the plan's own accounting
        assert run.spread[p.name]["default"] == pytest.approx(p.total_kg)


def test_no_plan_provisions_idle_gpus_or_nodes_and_the_carbon_plan_is_lowest(run):
    from bench.carbon.inputs import embodied

    for p in run.plans + run.ablation:
        assert (p.provisioned == p.active.max(axis=0)).all(), p.name  # every replica carries load in some hour
        for t, hw in enumerate(p.node_types):
            gpus = sum(n * c.candidate.device.devices for n, c in zip(p.provisioned, p.candidates)
                       if c.candidate.hardware == hw)
            assert p.nodes[t] == np.ceil(gpus / embodied.gpus().loc[hw, "gpus_per_node"]), p.name
        assert p.gpus >= 1 and p.node_count <= p.gpus
        host = run.host_capacity["reduced" if p.pillars.levers().reduced_host else "reference"]
        if p.offline_cpu.max() > 0:  # CPU work only on the hosts the plan counts
            assert p.node_count * host.requests_per_hour >= p.offline_cpu.max() - 1e-6, p.name
    carbon, feasible = run.plans[0], [p for p in run.plans[1:] if p.feasible]
    assert carbon.feasible and feasible
    assert all(carbon.total_kg <= b.total_kg + 1e-9 for b in feasible)
    energy = next(p for p in run.plans if p.name == "energy-optimal")
    assert energy.energy_kwh <= carbon.energy_kwh + 1e-9
    perf = next(p for p in run.plans if p.name == "performance-optimal")
    assert (perf.active == perf.active[0]).all() and perf.active.max() >= 1  # static: the same replicas on in every hour


def test_the_headline_compares_only_plans_that_meet_the_slo(run):
    from bench.carbon.planning.report import headline, plans_csv

    missing = dataclasses.replace(run.plans[1], feasible=False, worst_hour_attainment=0.77)
    lines = headline(dataclasses.replace(run, plans=[run.plans[0], missing, *run.plans[2:]]))
    assert not any("performance-optimal" in line and "saves" in line for line in lines)
    assert any(line.startswith("- performance-optimal misses the SLO (worst hour 77.00%)") for line in lines)
    failed = dataclasses.replace(run.plans[0], feasible=False)
    lines = headline(dataclasses.replace(run, plans=[failed, *run.plans[1:]]))
    assert lines[0].startswith("- no carbon-optimal plan meets the SLO") and not any("saves" in x for x in lines)
    table = plans_csv(run)
    assert list(table.columns) == ["plan", "kind", "feasible", "attainment", "worst_hour_attainment", "gpus", "nodes",
                                   "operational_kg", "embodied_gpu_kg", "embodied_host_kg", "total_kg", "energy_kwh",
                                   "cost_usd", "solver_gap", "solver_hit_time_limit"]
    assert len(table) == 10 and set(table["kind"]) == {"chosen", "baseline", "ablation"}


def test_a_fleet_too_small_for_an_hour_is_caught_by_the_whole_fleet_simulation(run):
    from bench.carbon.planning.verify import verify

    p = run.plans[0]
    small = dataclasses.replace(p, active=np.minimum(p.active, 1), online=p.online, offline_gpu=p.offline_gpu * 0)
    weak = [j for j, c in enumerate(p.candidates) if c.candidate.hardware == "l4"]
    small.active = np.zeros_like(p.active)
    small.active[:, weak[0]] = 1  # one L4 for every online request of the hour
    small.online = np.zeros_like(p.online)
    small.online[:, weak[0]] = p.online.sum(axis=1)
    v = verify(small, run.demand, run.inputs.model, run.inputs.slo, "round_robin", {})
    assert v.worst_hour < run.inputs.slo.attainment and v.failing_hours(run.inputs.slo, "hour")
    assert all(p.candidates[weak[0]].candidate.name in h.missed for h in v.hours)
    # A quick check cuts the failing hours short, and skips hours whose GPU types all have a
    # candidate to blame already (the busiest hour first): some of the same failing hours, the same
    # candidates to blame in each, so the same re-plan; the hours it did not simulate are marked partial
    quick = verify(small, run.demand, run.inputs.model, run.inputs.slo, "round_robin", {}, quick=True)
    assert quick.partial and not v.partial
    failing = quick.failing_hours(run.inputs.slo, "hour")
    assert failing and set(failing) <= set(v.failing_hours(run.inputs.slo, "hour"))
    assert all(quick.missed_in(h) == v.missed_in(h) for h in failing)
    # and on a plan that meets the SLO it is the full verification, figure for figure
    fine = verify(p, run.demand, run.inputs.model, run.inputs.slo, "round_robin", {}, quick=True)
    full = verify(p, run.demand, run.inputs.model, run.inputs.slo, "round_robin", {})
    assert not fine.partial and (fine.attainment, fine.worst_hour, fine.latency) == (full.attainment, full.worst_hour,
                                                                                     full.latency)
    assert [h.gpu_energy_j for h in fine.hours] == [h.gpu_energy_j for h in full.hours]


@pytest.mark.parametrize("online", [1, 7, 10, 99, 100, 1000, 12345])
@pytest.mark.parametrize("target", [0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
def test_allowed_misses_is_the_most_an_hour_may_miss_and_meet_its_target(online, target):
    from bench.carbon.planning.verify import allowed_misses

    a = allowed_misses(online, target)
    assert (online - a) / online >= target and (a == online or (online - a - 1) / online < target)


def test_each_offline_request_is_held_to_its_own_arrival_plus_the_deadline():
    from bench.carbon.planning.verify import late_offline

    def misses(finish, served, arrived, deadline, offsets):
        return [int(m.sum()) for m in late_offline([np.asarray(f, float) for f in finish], np.asarray(served, float),
                                                   np.asarray(arrived, float), deadline, offsets)]

    # 10 arrive in hour 0, every 360 s, due 2 h after arriving; hour 0 serves the oldest 4, hour 1 the
    # other 6 (arrived at 1440-3240 s, due at 8640-10440 s): finishing at 10100 s and 11300 s is late
    # for the two youngest (due 10080 s and 10440 s), the others are in time.
    offsets = lambda a: np.arange(10) * 360.0 if a == 0 else np.zeros(0)  # noqa: E731
    finish = [[10, 20, 30, 40], [100, 200, 300, 3700, 6500, 7700], []]
    assert misses(finish, [4, 6, 0], [10, 0, 0], 2, offsets) == [0, 2, 0]
    assert misses([[10, 20, 30, 40], [100] * 6, []], [4, 6, 0], [10, 0, 0], 2, offsets) == [0, 0, 0]
    # Due an hour after arriving: hour 0's last two (2400 s, 3000 s) served in hour 1 are due at 6000 s
    # and 6600 s; finishing at 6100 s the first is late, at 6200 s the second is not; finishing inside
    # its own hour is no guarantee: a request is late whenever it ends after its own deadline.
    offsets = lambda a: np.array([600, 1200, 1800, 2400, 3000.])  # noqa: E731
    finish = [[10, 20, 30], [2500, 2600, 10, 10, 10, 10, 10]]
    assert misses(finish, [3, 7], [5, 5], 1, offsets) == [0, 1]
    assert misses(finish, [3, 7], [5, 5], 24, offsets) == [0, 0]
    assert misses([[10, 20, 30], [np.inf] + [10] * 6], [3, 7], [5, 5], 24, offsets) == [0, 1]  # never finished


def test_offline_work_served_late_on_too_few_replicas_fails_its_hours_only_when_due(run):
    from bench.carbon.planning.verify import verify

    p = run.plans[0]
    weak = next(j for j, c in enumerate(p.candidates) if c.candidate.hardware == "l4")
    _, arrived = run.demand.counts()
    heavy = dataclasses.replace(p, active=np.zeros_like(p.active), online=np.zeros_like(p.online),
                                offline_gpu=np.zeros_like(p.offline_gpu), offline_cpu=np.zeros_like(p.offline_cpu))
    heavy.active[:, weak] = 3  # too few for the hour's work: overloaded, but not so far that it takes long
    heavy.online[:, weak] = p.online.sum(axis=1)
    heavy.offline_gpu[1:, weak] = arrived[:-1]  # each hour's arrivals served an hour later
    i = run.inputs
    cache: dict = {}  # an hour's simulation does not depend on the deadline: the second check reuses it
    due_now = verify(heavy, run.demand, i.model, i.slo, "round_robin", cache, deadline_h=1)
    finish = [h.offline_finish_s for h in due_now.hours]
    assert len(finish[0]) == 0 and all(len(f) == arrived[0] for f in finish[1:])
    spilled = np.array([int((f > 3600).sum()) for f in finish])
    # Due an hour after arriving and served only in the next hour: at least every request that
    # spills past that hour is late, and more finish after their own deadline within it.
    assert (due_now.deadline_misses[1:] > spilled[1:]).all() and due_now.deadline_misses[0] == 0
    assert set(due_now.failing_hours(dataclasses.replace(i.slo, attainment=0.0), "hour")) == set(range(1, len(finish)))
    assert due_now.missed_in(1) == {p.candidates[weak].candidate.name}
    later = verify(heavy, run.demand, i.model, i.slo, "round_robin", cache, deadline_h=24)  # due past the 6 h period
    assert all(np.isfinite(f).all() for f in finish)  # every request finished within the horizon ...
    assert (later.deadline_misses == 0).all() and not later.failing_hours(dataclasses.replace(i.slo, attainment=0.0),
                                                                         "hour")  # ... so none is late


def test_an_slo_no_request_can_meet_even_alone_is_refused_first_with_the_count():
    with pytest.raises(PlanError, match=r"^\d+ of \d+ online requests in the worst hour cannot meet the SLO "
                       r".*even alone on an empty replica of any candidate; the 99% target allows \d+; closest: \S+"):
        plan.run(inputs(slo=Slo(ttft_s=1e-4, tpot_s=1e-5)))


def bench(*args):
    from tests.cli.runner import run_cli

    return run_cli("sweep=none", *args)


@pytest.mark.long
def test_task_plan_on_embedded_defaults_prints_the_report(tmp_path):
    # As the README runs it: no sweep=none, so the main measuring preset is in the config and
    # must not make the plan run once per measurement point. Every default but the period
    # (`plan.hours`, 24): two hours of the default trace, grid, model and candidates give every
    # section of the report asserted below (each hour is verified by simulation, so fewer run faster);
    # tests/test_end_to_end.py starts the plan on all defaults as `python -m bench task=plan`.
    from tests.cli.runner import run_cli

    out = run_cli("task=plan", "plan.hours=2", f"results_dir={tmp_path}")
    assert out.code == 0, out.stderr[-2000:]
    assert out.stdout.count("# Carbon-aware plan: Llama-3-8B") == 1 and "attainment (pooled)" in out.stdout
    assert (tmp_path / "plan" / "plan.md").exists() and (tmp_path / "plan" / "plan_carbon.png").exists()
    table = pd.read_csv(tmp_path / "plan" / "plans.csv")
    carbon = table[table["plan"] == "carbon-optimal"].iloc[0]
    assert carbon["feasible"] and (table[table["feasible"]]["total_kg"] >= carbon["total_kg"] - 1e-9).all()
    assert "both meet the SLO" in out.stdout
    assert "the series counts direct emissions" in out.stdout and "## Sensitivity" in out.stdout
    assert "| grid +20% | " in out.stdout and "- Reuse: host CPUs spend" in out.stdout
    assert "energy cpu=model:process_cpu_time_x_tdp_per_core: a model, not a measurement" in out.stdout


@pytest.mark.parametrize("args, field", [
    (["plan.model=gpt5"], "plan.model"),
    (["plan.reference=h100_sxm:7"], "plan.reference"),
    (["grid=csv"], "grid"),
    (["workload.path=/nonexistent.csv"], "workload"),
    (["plan.slo_attainment=1.5"], "plan.slo_attainment"),
    (["plan.gpus=[tpu]"], "plan.gpus"),
    (["grid=constant", "grid.intensity_g_per_kwh=5000"], "grid"),
])
def test_bad_plan_inputs_name_their_field(args, field, tmp_path):
    from hydra import compose, initialize_config_dir

    from bench.cli.store import register_configs
    from bench.cli.validate import ConfigError, validate

    from bench.cli.schema import to_typed

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = to_typed(compose("config", overrides=["task=plan", f"results_dir={tmp_path}", *args]))
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    assert err.value.field == field


def test_a_bad_grid_file_fails_before_work(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("timestamp,intensity_g_per_kwh\n2022-07-15 00:00+00:00,0.25\n2022-07-15 01:00+00:00,9000\n")
    out = bench("task=plan", "grid=csv", f"grid.path={path}", f"results_dir={tmp_path}")
    assert out.code == 2 and "invalid grid=" in out.stderr and "wrong grid.units" in out.stderr


def test_a_measured_gpu_profile_replaces_the_datasheet_model(tmp_path):
    import pandas as pd

    from bench.carbon.serving.device import measured_profiles
    from tests.profile.test_profiles import point

    rng = np.random.default_rng(3)
    rows = [point(k, b, n, rng, env_device_name="NVIDIA H100 80GB HBM3", gpu_idle_power_w=72.0)
            for k in ("prefill.triton", "decode.triton") for b in (1, 4, 16, 64) for n in (1024, 4096)]
    store.write(profiles.build(pd.DataFrame(rows), "h100-test"), tmp_path)
    found = measured_profiles(["h100_sxm", "l4"], str(tmp_path))
    assert list(found) == ["h100_sxm"]
    cands = plan.candidates(dataclasses.replace(inputs(), gpu_profiles=found))
    methods = {c.hardware: c.device.method for c in cands}
    assert methods["h100_sxm"].startswith("profile:h100-test") and methods["l4"].startswith("model:datasheet")
    assert next(c for c in cands if c.hardware == "h100_sxm").device.idle_w == pytest.approx(72.0)
    # The report names the profile in use, and for the GPU without one, the profile it would need.
    from bench.carbon.planning.report import device_model_lines

    text = "\n".join(device_model_lines(dataclasses.replace(inputs(), gpu_profiles=found)))
    assert "- h100_sxm: measured profile `h100-test` (NVIDIA H100 80GB HBM3" in text
    assert f"- l4: `{serving.datasheet('l4').method}`; no measured profile of a GPU named like 'L4'" in text
    assert "calibrated" in serving.datasheet("l4").method
    assert "sweep=default" in text and "`cpu-amd-epyc-2core`" in text


def test_a_mixture_of_experts_on_a_measured_profile_takes_its_rooflines_not_the_dense_parts():
    # The linear and layer cases measure dense layers: a measured profile with them composes a dense
    # model's step, while a mixture of experts (or a hybrid) takes the profile's attention rooflines,
    # said in the method.
    from tests.profile import synthetic_parts

    composed = synthetic_parts.profile()
    dense = plan.candidates(dataclasses.replace(inputs(), gpus=["h100_sxm"], gpu_profiles={"h100_sxm": composed}))
    assert dense[0].device.parts is not None
    moe = dataclasses.replace(inputs(), model=serving.PRESETS["qwen3_30b_a3b"], gpus=["h100_sxm"],
                              gpu_profiles={"h100_sxm": composed})
    cand = plan.candidates(moe)[0]
    assert cand.device.parts is None and "not composed (a mixture of experts" in cand.device.method
    hybrid = dataclasses.replace(moe, model=serving.PRESETS["nemotron_nano_9b_v2"])  # so does a hybrid
    assert plan.candidates(hybrid)[0].device.parts is None
    serving.StepCost.of(hybrid.model, plan.candidates(hybrid)[0].device)  # costed, not refused
    cost = serving.StepCost.of(moe.model, cand.device)  # and it costs a step
    t8, _ = cost.time_energy(0.0, 0.0, 8.0, 8000.0, 0.0)
    t64, _ = cost.time_energy(0.0, 0.0, 64.0, 64000.0, 0.0)
    assert 0 < t8 < t64


def test_sm_clock_candidates_come_from_measured_frequency_fits():
    import pandas as pd

    from tests.profile.test_profiles import point

    rng = np.random.default_rng(4)
    rows = [point(k, b, n, rng, env_device_name="NVIDIA H100 80GB HBM3", gpu_idle_power_w=72.0)
            for k in ("prefill.triton", "decode.triton") for b in (1, 4, 16, 64) for n in (1024, 4096)]
    for kind, k_s in (("prefill.triton", 4e-3), ("decode.triton", 1e-4)):
        for f in (1005, 1410, 1755, 1980):
            row = point(kind, 8, 4096, rng, env_device_name="NVIDIA H100 80GB HBM3", clocks_sm_mhz_requested=float(f))
            row["time_per_call_s"] = 1e-3 + k_s / (f / 1000)
            row["gpu_energy_per_call_j"] = (100 + 200 * (f / 1000) ** 2.5) * row["time_per_call_s"]
            rows.append(row)
    measured = profiles.build(pd.DataFrame(rows), "h100-freq")
    cands = plan.candidates(dataclasses.replace(inputs(), gpus=["h100_sxm"], gpu_profiles={"h100_sxm": measured}))
    clocks = sorted({c.name.split("@")[1].split(":")[0] for c in cands if "@" in c.name})
    assert clocks == ["1005MHz", "1410MHz", "1755MHz"]
    base = next(c for c in cands if "@" not in c.name).device
    slow = next(c for c in cands if "@1005MHz" in c.name).device
    assert slow.flop_per_s < base.flop_per_s and slow.e_flop_j < base.e_flop_j  # slower, less energy per flop
    assert "from measured frequency fits" in slow.method


def test_an_infeasible_slo_is_one_line_exit_3_before_any_plan(tmp_path):
    out = bench("task=plan", "plan.slo_ttft_s=0.0001", "plan.slo_tpot_s=0.00001", f"results_dir={tmp_path}")
    assert out.code == 3, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert out.stderr.startswith("bench: PlanError: ") and "even alone on an empty replica" in out.stderr
    assert not (tmp_path / "plan" / "plan.md").exists()


@pytest.mark.parametrize("args, field", [(["plan.slo_tpot_metric=p99"], "plan.slo_tpot_metric"),
                                         (["plan.slo_percentile=0"], "plan.slo_percentile"),
                                         (["plan.slo_scope=day"], "plan.slo_scope"),
                                         (["plan.routing=random"], "plan.routing")])
def test_bad_slo_and_routing_settings_are_refused_before_work(args, field, tmp_path):
    out = bench("task=plan", *args, f"results_dir={tmp_path}")
    assert out.code == 2 and out.stderr.startswith(f"bench: invalid {field}="), out.stderr


def test_donors_are_named_as_their_own_solves_and_the_adopted_carbon_row_as_itself(run):
    solved = [run.plans[0]] + run.plans[2:] + run.ablation
    target = run.plans[2]
    own = plan.donors(target, solved[0], solved)
    # The carbon plan kept its own solve: every other solved plan, the target left out, each named
    # as its own MILP solve (its row may end up showing another fleet), its fleet that solve's.
    assert [d.name for d in own] == [p.name + plan.OWN_MILP for p in solved if p is not target]
    assert all(np.array_equal(d.provisioned, p.provisioned) for d, p in zip(own, [p for p in solved if p is not target]))
    # The carbon row adopted another plan: that row comes first under its own name, then every
    # solve as before (the carbon plan's own solve among them, named as such).
    adopted = dataclasses.replace(run.plans[0], provisioned=run.plans[0].provisioned + 1)
    with_row = plan.donors(target, adopted, solved)
    assert with_row[0] is adopted and with_row[0].name == "carbon-optimal"
    assert [d.name for d in with_row[1:]] == [d.name for d in own]
    assert "carbon-optimal" + plan.OWN_MILP in [d.name for d in with_row]


def test_a_carbon_plan_that_never_met_the_slo_adopts_the_best_plan_open_to_its_levers(run):
    ctx = plan.Context(run.inputs, None, run.demand, {})
    # (A solve's own plan: not derated, its gap known, as a round that gave up would leave it.)
    failed = dataclasses.replace(run.plans[0], feasible=False, solver_gap=0.5, derated=False)
    # The setting is the one the run solved with: rebuilt from the run's capacities and demand.
    ctx.setting = plan.setting_of(run.inputs, run.capacities, run.demand)
    hosts = {k: v for k, v in run.host_capacity.items()}
    econ_of = lambda pillars: plan.economics_for(run.inputs, hosts, pillars)  # noqa: E731
    # Every donor derated, so the adopted plan's own flag is told from a copied one whatever the run solved.
    donors = [dataclasses.replace(p, derated=True) for p in run.plans[1:] + run.ablation]
    adopted = plan.adopt_better(failed, donors, ctx, econ_of)
    assert adopted.feasible and adopted.name == "carbon-optimal" and "adopted" in adopted.notes[-1]
    # Its own solve's notes, said to be of the plan it replaced (not the adopted plan's read as its own).
    assert adopted.notes[:-1] == ["its own MILP plan, not the one reported: " + "; ".join(failed.notes)]
    feasible = [p for p in run.plans[1:] + run.ablation if p.feasible]
    assert adopted.total_kg <= min(p.total_kg for p in feasible) + 1e-9  # counted with all pillars on, never worse
    donor_of = {p.name: p for p in donors}
    source = donor_of[adopted.notes[-1].split("the ")[1].split(" plan,")[0].removesuffix(plan.OWN_MILP)]

    def modelled(p) -> float:  # the MILP's figure of a plan's schedule under the carbon plan's pillars
        q = dataclasses.replace(p, pillars=failed.pillars, verification=None, notes=[])
        plan.account(q, q.candidates, ctx.setting, failed.pillars, econ_of(failed.pillars))
        return q.total_kg

    def expected(own, donor) -> float:  # the adopted plan's modelled figure against the own bound
        # A derated solve's bound is of a narrower problem: its first round's, at full capacities.
        bound = own.first_bound if own.derated else modelled(own) * (1 - own.solver_gap)
        if math.isnan(bound):
            return float("nan")
        if modelled(donor) < bound * (1 - 1e-6):  # below a bound: not a true one here, unknown
            return float("nan")
        return (modelled(donor) - bound) / modelled(donor)

    # On the model, as every gap: never the source's own gap (another objective or fewer levers).
    assert adopted.solver_gap == pytest.approx(expected(failed, source), nan_ok=True)
    assert math.isfinite(adopted.solver_gap) and "its gap 50.00%" in adopted.notes[-1]  # its own solve's figure
    assert not adopted.derated and source.derated  # its own flag, not the donor's
    # Adopted over a feasible plan of its own: its modelled figure against the own bound, whatever
    # the verified figures (a verified figure against a modelled bound mixed the two).
    donor = dataclasses.replace(min(feasible, key=lambda p: p.total_kg), derated=True)
    own = dataclasses.replace(run.plans[0], operational_kg=run.plans[0].operational_kg + donor.total_kg,
                              solver_gap=0.9, derated=False)
    adopted = plan.adopt_better(own, [donor], ctx, econ_of)
    assert "adopted" in adopted.notes[-1] and adopted.total_kg < own.total_kg
    assert adopted.solver_gap == pytest.approx(expected(own, donor)) and adopted.solver_gap > 0.5
    assert "its gap: its modelled figure against this plan's own bound" in adopted.notes[-1]
    # Better by more than rounding: a plan a ten-thousandth of a percent above one open to its levers adopts it
    # (it is not carbon-optimal otherwise; a tolerance of 1e-6 had left one 4.6e-7 above the energy plan),
    # and its gap is never below 0.
    counted = dataclasses.replace(donor, pillars=own.pillars, notes=list(donor.notes))
    plan.account(counted, counted.candidates, ctx.setting, own.pillars, econ_of(own.pillars))
    hair = dataclasses.replace(own, operational_kg=own.operational_kg + counted.total_kg * (1 + 1e-6) - own.total_kg)
    assert hair.total_kg > counted.total_kg and "adopted" in plan.adopt_better(hair, [donor], ctx, econ_of).notes[-1]
    hair = dataclasses.replace(own, operational_kg=own.operational_kg + counted.total_kg * (1 + 4.6e-7) - own.total_kg)
    assert "adopted" in plan.adopt_better(hair, [donor], ctx, econ_of).notes[-1]  # the fuzzed case's margin
    noise = dataclasses.replace(own, operational_kg=own.operational_kg + counted.total_kg * (1 + 1e-10) - own.total_kg)
    assert plan.adopt_better(noise, [donor], ctx, econ_of) is noise  # rounding: kept, not "adopted"
    # (its own bound a hair above the adopted plan's modelled figure: rounding, a gap of 0, not -1e-8)
    assert modelled(own) == pytest.approx(modelled(donor), rel=1e-12)  # (the same schedule: the bound below sets it)
    close = dataclasses.replace(own, solver_gap=-1e-8)
    assert plan.adopt_better(close, [donor], ctx, econ_of).solver_gap == 0.0
    tight = dataclasses.replace(own, solver_gap=0.0)
    assert plan.adopt_better(tight, [donor], ctx, econ_of).solver_gap == pytest.approx(expected(tight, donor))
    # Its last solve derated: that bound is not one on the donor's plan; its first round's is.
    derated = dataclasses.replace(own, derated=True, first_bound=modelled(own) * 0.5)
    adopted = plan.adopt_better(derated, [donor], ctx, econ_of)
    assert adopted.solver_gap == pytest.approx(expected(derated, donor)) and adopted.first_bound == derated.first_bound
    assert adopted.solver_gap == pytest.approx(1 - modelled(own) * 0.5 / modelled(donor))
    assert "against this plan's first-round bound (its last solve was derated)" in adopted.notes[-1]
    unbounded = dataclasses.replace(own, derated=True, first_bound=float("nan"))
    adopted = plan.adopt_better(unbounded, [donor], ctx, econ_of)
    assert np.isnan(adopted.solver_gap) and "its gap unknown: this plan's own solve was derated" in adopted.notes[-1]
    # A donor whose modelled figure is below the own plan's claimed bound (possible only through
    # near-copies merged within 1%): the bound is not one on it, so the gap is unknown, not a clamped 0.
    open_to_it = [p for p in feasible if not (planner.offline_on_cpus(p) and p.pillars.reduce != failed.pillars.reduce)]
    high, low = max(open_to_it, key=modelled), min(open_to_it, key=modelled)
    assert modelled(low) < modelled(high) * (1 - 1e-3)  # the fixture has such a pair
    # (the worse schedule as the carbon plan's own, every pillar on, claimed optimal: gap 0)
    exact = dataclasses.replace(high, pillars=failed.pillars, objective="carbon", solver_gap=0.0, derated=False,
                                operational_kg=high.operational_kg + low.total_kg)
    adopted = plan.adopt_better(exact, [low], ctx, econ_of)
    assert "adopted" in adopted.notes[-1] and np.isnan(adopted.solver_gap)
    assert "its gap unknown: its modelled figure is below this plan's own bound" in adopted.notes[-1]
    # A plan using a pillar the target lacks is not open to it.
    none = next(p for p in run.ablation if p.name == "none")
    only = [p for p in run.ablation if p.name == "+shift"]
    assert plan.adopt_better(dataclasses.replace(none, feasible=False), only, ctx, econ_of).feasible is False
    # A plan whose CPU schedule was sized for another host (Reduce differs) is not open to it; the
    # solver's residue of ~1e-5 requests on CPUs is no schedule.
    other_host = next(p for p in feasible if p.pillars.reduce != failed.pillars.reduce)
    for on_cpus, open_ in ((1e-6, True), (1.0, False)):
        cpu = np.zeros_like(other_host.offline_cpu)
        cpu[0] = on_cpus
        donor = dataclasses.replace(other_host, offline_cpu=cpu)
        assert plan.adopt_better(failed, [donor], ctx, econ_of).feasible is open_


def test_a_verified_plan_is_counted_from_its_simulation_and_reports_per_request_figures(run):
    from bench.carbon.planning import accounting
    from bench.carbon.planning.setting import J_PER_KWH

    carbon = run.plans[0]
    assert carbon.energy_method.startswith("simulated: whole-fleet")
    v = carbon.verification
    gpu_j = sum(h.gpu_energy_j for h in v.hours)
    cpu_j = float(carbon.offline_cpu.sum()) * (run.host_capacity["reduced"].dynamic_j_per_request
                                               if carbon.offline_cpu.sum() else 0.0)
    assert carbon.energy_kwh == pytest.approx((gpu_j + cpu_j) * run.inputs.pue / J_PER_KWH)
    # Requests' shares never exceed what the GPUs spent (idle power between steps is nobody's).
    assert sum(float((h.prefill_j + h.decode_j).sum()) for h in v.hours) <= gpu_j * (1 + 1e-12)
    table = accounting.per_request(carbon, run.inputs.intensity.g_per_kwh, run.inputs.pue).set_index("per request")
    assert (table["p50"] <= table["p90"]).all() and (table["p90"] <= table["p99"]).all()
    assert table.loc["total J", "mean"] == pytest.approx(table.loc["prefill J", "mean"] + table.loc["decode J", "mean"])
    from bench.carbon.planning.report import host_power_of

    hosts = host_power_of(run, carbon)
    assert set(hosts) == set(carbon.node_types) and all(p.method.startswith("model:") for p in hosts.values())
    scopes = accounting.scopes(carbon, run.inputs.pue, hosts).set_index("scope")
    tokens = sum(float(h.tokens.sum()) for h in v.hours)
    nodes = accounting.active_nodes(carbon)
    # Every hour with an active GPU has a node holding it, and no more nodes than its GPUs fill.
    for t, per_hour in nodes.items():
        assert per_hour.max() <= carbon.nodes[carbon.node_types.index(t)]
    host_j = sum(float(nodes[t].sum()) * hosts[t].total_w * 3600.0 for t in nodes)
    assert host_j > 0
    assert scopes.loc["node", "J per token"] == pytest.approx((gpu_j + host_j) / tokens)
    assert "model:" in scopes.loc["node", "counts"]
    assert np.isnan(accounting.scopes(carbon, run.inputs.pue).set_index("scope").loc["node", "J per token"])
    assert scopes.loc["facility", "J per token"] == pytest.approx(scopes.loc["gpu", "J per token"] * run.inputs.pue)
    assert scopes.loc["provisioned", "J per token"] >= scopes.loc["facility", "J per token"] * (1 - 1e-9)


def test_plans_solved_side_by_side_are_the_plans_solved_one_after_another(monkeypatch):
    import dataclasses

    from bench.carbon.planning import parallel

    if parallel.threads_started:  # an earlier test solved a MILP in this process
        if (os.cpu_count() or 1) > 2:  # HiGHS sizes its threads by the machine's cores: no fork after it
            pytest.skip("HiGHS has run in this process on more than two cores; forking now could deadlock")
        monkeypatch.setattr(parallel, "threads_started", False)  # on two cores it starts no threads

    base = inputs(minutes=60)
    w = base.workload.subset(np.arange(len(base.workload.arrival_s)) % 20 == 0)  # a light hour: cheap to simulate
    small = dataclasses.replace(base, workload=w, intensity=grid.trace("ciso_2022").window("2022-07-15 00:00+00:00", 2))
    serial, side_by_side = (plan.run(dataclasses.replace(small, workers=n)) for n in (1, 2))
    for a, b in zip(serial.plans + serial.ablation, side_by_side.plans + side_by_side.ablation):
        assert (a.name, a.feasible, a.gpus) == (b.name, b.feasible, b.gpus)
        assert np.array_equal(a.active, b.active) and a.total_kg == pytest.approx(b.total_kg, rel=1e-12)
    assert [c.requests_per_hour for c in serial.capacities] == [c.requests_per_hour for c in side_by_side.capacities]


@pytest.mark.parametrize("seed", range(6))
def test_late_offline_is_each_request_in_oldest_first_order_held_to_its_own_deadline(seed):
    # Against the rule spelled out request by request: the period's offline requests in arrival
    # order; each hour serves the next ones (its GPU batch first); the i-th of an hour's GPU batch is
    # the request at that place, late if it ends after its arrival plus the deadline.
    from bench.carbon.planning.verify import late_offline

    rng = np.random.default_rng(seed)
    H, deadline = 30, int(rng.integers(1, 6))
    arrived = rng.integers(0, 12, H).astype(float)
    times = {a: np.sort(rng.uniform(0, 3600, int(n))) for a, n in enumerate(arrived)}
    order = [(a, t) for a in range(H) for t in times[a]]  # oldest first
    served, gpu, finish, taken = np.zeros(H), [], [], 0
    for h in range(H):
        ready = int(arrived[:h + 1].sum()) - taken
        n = int(rng.integers(0, ready + 1)) if h < H - 1 else ready
        g = int(rng.integers(0, n + 1))
        served[h], taken = n, taken + n
        gpu.append(g)
        finish.append(rng.uniform(0, 3 * 3600, g))
    got = late_offline(finish, served, arrived, deadline, lambda a: times[a])
    done = 0
    for h in range(H):
        expect = [h * 3600 + f > (order[done + i][0] + deadline) * 3600 + order[done + i][1]
                  for i, f in enumerate(finish[h])]
        assert got[h].tolist() == expect
        done += int(served[h])


@pytest.mark.parametrize("quick", [False, True])
def test_hours_alike_are_simulated_once_per_verification(run, monkeypatch, quick):
    # Hours with one cache key (a replayed trace hour in the same state) share one simulation, also
    # within a single verification's loop (a year of them was simulated hour by hour once).
    from bench.carbon.planning import verify as verification

    calls = []
    real = verification.verify_hour
    monkeypatch.setattr(verification, "verify_hour", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(verification, "_key", lambda plan, h, demand: ("one hour",))
    verification.verify(run.plans[0], run.demand, run.inputs.model, run.inputs.slo, "round_robin", {}, quick=quick)
    assert len(calls) == 1


def test_a_quick_check_simulates_only_hours_that_could_blame_another_gpu_type(run, monkeypatch):
    # One L4 for every online request: the busiest hour fails and blames it. The re-plan derates the
    # L4 in every hour whatever they show, so a quick check skips every other hour with only L4s
    # active; the one hour that also runs another GPU type could blame it, so it is simulated. An
    # hour named in `first` (failed in an earlier round) goes before the busiest. The full check
    # simulates them all.
    from bench.carbon.planning import verify as verification

    p = run.plans[0]
    small = dataclasses.replace(p, offline_gpu=p.offline_gpu * 0)
    weak = [j for j, c in enumerate(p.candidates) if c.candidate.hardware == "l4"][0]
    other = [j for j, c in enumerate(p.candidates) if c.candidate.hardware != "l4"][0]
    small.active = np.zeros_like(p.active)
    small.active[:, weak] = 1
    small.online = np.zeros_like(p.online)
    small.online[:, weak] = p.online.sum(axis=1)
    busiest = int(np.argmax(small.online.sum(axis=1)))
    quiet = int(np.argmin(small.online.sum(axis=1)))
    small.active[quiet, other] = 1
    calls = []
    real = verification.verify_hour
    monkeypatch.setattr(verification, "verify_hour", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    monkeypatch.setattr(verification, "_key", lambda plan, h, demand: ("hour", h))  # every hour its own
    args = (small, run.demand, run.inputs.model, run.inputs.slo, "round_robin")
    quick = verification.verify(*args, {}, quick=True)
    assert calls == [busiest, quiet] and quick.partial
    assert busiest in quick.failing_hours(run.inputs.slo, "hour")
    calls.clear()
    second = (busiest + 1) % len(small.active)
    verification.verify(*args, {}, quick=True, first=(second,))
    assert calls[0] == second and len(calls) <= 3 and quiet in calls
    calls.clear()
    small.active[quiet, other] = 0  # only L4s: the busiest hour alone decides the re-plan
    verification.verify(*args, {}, quick=True)
    assert calls == [busiest]
    calls.clear()
    verification.verify(*args, {})
    assert sorted(calls) == list(range(len(small.active)))


def test_a_gpu_type_blamed_round_after_round_is_derated_faster(run, monkeypatch):
    # The re-planning loop: a type blamed in k rounds in a row is derated by DERATE^k in the k-th
    # re-plan (0.85, then 0.85^3, then 0.85^6); a round that blames another type ends its streak.
    # Verification is replaced by a script of which type each round blames (the loop is under test).
    from bench.carbon.planning import run as planning
    from bench.carbon.planning.verify import HourResult, Verification

    ctx = planning.Context(run.inputs, run.setting, run.demand, {})
    names = {c.candidate.hardware: c.candidate.name for c in run.setting.capacities}
    script = iter(["l4", "l4", "h100_sxm", "l4", None, None])  # the last: the tie-broken plan
    seen, solved = [], []
    real_solve = planning.solve

    def solve(*a, **k):
        derate = a[5]
        seen.append({hw: float(derate[n][0]) if n in derate else 1.0 for hw, n in names.items()})
        solved.append(real_solve(*a, **k))
        return solved[-1]

    def check(self, plan, econ, quick=False, first=()):
        blamed = next(script)
        ok = blamed is None
        hour = HourResult(10 if ok else 5, 10, 1.0 if ok else 0.5, set() if ok else {names[blamed]})
        v = Verification([hour], hour.attainment, hour.attainment, hour.worst_replica, {})
        plan.feasible, plan.verification = ok, v
        return v

    monkeypatch.setattr(planning, "solve", solve)
    monkeypatch.setattr(planning.Context, "check", check)
    monkeypatch.setattr(planning, "break_ties", lambda plan, solve_by=None: plan)
    econ = planning.economics_for(run.inputs, run.host_capacity, run.inputs.pillars)
    plan_ = planning.solve_verified(ctx, "carbon", run.inputs.pillars, econ, "t", "chosen")
    d = planning.DERATE
    assert [s["l4"] for s in seen] == pytest.approx([1.0, d, d ** 3, d ** 3, d ** 4])
    assert [s["h100_sxm"] for s in seen] == pytest.approx([1.0, 1.0, 1.0, d, d])
    assert any("l4 at 52%" in n for n in plan_.notes)  # 0.85^4, as planned in the round that passed
    # Derated, it keeps its first round's bound (at full capacities) for an adoption's gap.
    first = solved[0]
    assert plan_.derated and plan_.first_bound == pytest.approx(first.total_kg * (1 - first.solver_gap))


def test_a_gpu_type_still_missing_below_a_tenth_of_its_capacity_is_taken_out(run, monkeypatch):
    # Blamed five rounds in a row, an L4 is derated to 0.85^15 (9%) of its capacity: under the 10%
    # floor it is taken out, so the sixth solve plans without it (not ten times its replicas).
    from bench.carbon.planning import run as planning

    ctx = planning.Context(run.inputs, run.setting, run.demand, {})
    l4 = [c.candidate.name for c in run.setting.capacities if c.candidate.hardware == "l4"][0]
    monkeypatch.setattr(planning.Context, "check", _scripted_check(["l4"] * 5 + [None, None], l4))
    monkeypatch.setattr(planning, "break_ties", lambda plan, solve_by=None: plan)
    econ = planning.economics_for(run.inputs, run.host_capacity, run.inputs.pillars)
    plan_ = planning.solve_verified(ctx, "carbon", run.inputs.pillars, econ, "t", "chosen")
    assert plan_.feasible and all(c.candidate.hardware != "l4" for c in plan_.candidates)
    assert any("in 6 round(s)" in n and "l4 taken out" in n for n in plan_.notes)


def test_re_planning_stops_when_every_allowed_candidate_is_taken_out(run, monkeypatch):
    # Rightsize off: only the reference H100 candidate is open. Blamed five rounds in a row it is
    # taken out, so no sixth solve is possible: the fifth plan stands, infeasible, verified in full
    # (its own round's check was a quick one), and the note says why re-planning stopped.
    from bench.carbon.planning import run as planning
    from bench.carbon.planning.pillars import Pillars
    from bench.carbon.planning.verify import HourResult, Verification

    ctx = planning.Context(run.inputs, run.setting, run.demand, {})
    ref = run.setting.reference
    calls = []

    def check(self, plan, econ, quick=False, first=()):
        calls.append(quick)
        hour = HourResult(5, 10, 0.5, {ref})
        v = Verification([hour], 0.5, 0.5, 0.5, {})
        plan.feasible, plan.verification = False, v
        return v

    monkeypatch.setattr(planning.Context, "check", check)
    pillars = Pillars.none()
    econ = planning.economics_for(run.inputs, run.host_capacity, pillars)
    plan_ = planning.solve_verified(ctx, "carbon", pillars, econ, "t", "ablation")
    assert not plan_.feasible and calls == [True] * 5 + [False]
    assert any("in 5 round(s)" in n and "taken out" in n and "re-planning stopped" in n for n in plan_.notes)


def test_a_plan_keeps_to_its_solving_budget_over_its_rounds_and_says_when_it_ran_out(run, monkeypatch):
    # Three rounds (two fail their check) under a budget the first solve spends: each later solve is
    # handed what is left of it (nothing), so its MILP keeps to the least a solve gets; each still
    # gives a plan, and the note says the budget was spent. The budget counts solves, not checks.
    import time

    from bench.carbon.planning import milp
    from bench.carbon.planning import run as planning

    inputs = dataclasses.replace(run.inputs, solve_budget_s=1e-3)
    ctx = planning.Context(inputs, run.setting, run.demand, {})
    l4 = [c.candidate.name for c in run.setting.capacities if c.candidate.hardware == "l4"][0]
    check = _scripted_check(["l4", "l4", None, None], l4)
    ends, limits, real_solve, real_milp = [], [], planning.solve, milp.highs.milp

    def solve(*a, **k):
        ends.append(k["solve_by"] - time.monotonic())
        return real_solve(*a, **k)

    def capped(cost, constraints, integrality, bounds, time_limit_s, rel_gap):
        limits.append(time_limit_s)
        return real_milp(cost, constraints, integrality, bounds, time_limit_s, rel_gap)

    def slow_check(self, plan, econ, quick=False, first=()):
        time.sleep(0.01)  # a check's time is not the solves'
        return check(self, plan, econ, quick, first)

    monkeypatch.setattr(milp.highs, "milp", capped)
    monkeypatch.setattr(planning, "break_ties", lambda plan, solve_by=None: plan)
    econ = planning.economics_for(inputs, run.host_capacity, inputs.pillars)
    # A budget of 5 s and checks of 0.4 s: each solve is handed the budget less the solves before it,
    # not less the checks between them too.
    spent = []

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return solve(*a, **k)
        finally:
            spent.append(time.perf_counter() - t)

    def paused(self, plan, econ, quick=False, first=()):
        time.sleep(0.4)
        return check(self, plan, econ, quick, first)
    monkeypatch.setattr(planning, "solve", timed)
    monkeypatch.setattr(planning.Context, "check", paused)
    five = planning.Context(dataclasses.replace(run.inputs, solve_budget_s=5.0), run.setting, run.demand, {})
    planning.solve_verified(five, "carbon", inputs.pillars, econ, "t", "chosen")
    # (A solve's own time is at most its wall time here, so what is left is at least the budget less
    # that; counting the 0.4 s checks would leave 0.4 s and 0.8 s less.)
    assert len(ends) == 3 and 5.0 - spent[0] - 0.2 <= ends[1] <= 5.0
    assert 5.0 - spent[0] - spent[1] - 0.2 <= ends[2] <= ends[1]
    check, ends, limits = _scripted_check(["l4", "l4", None, None], l4), [], []
    monkeypatch.setattr(planning, "solve", solve)
    monkeypatch.setattr(planning.Context, "check", slow_check)
    monkeypatch.setattr(planning, "break_ties", lambda plan, solve_by=None: plan)
    econ = planning.economics_for(inputs, run.host_capacity, inputs.pillars)
    plan_ = planning.solve_verified(ctx, "carbon", inputs.pillars, econ, "t", "chosen")
    assert len(ends) == 3 and all(e <= 1e-3 for e in ends)  # what was left of the budget, at each solve
    assert len(limits) == 3 and all(lim == milp.MIN_SOLVE_S for lim in limits[1:])
    assert plan_.feasible and "took the whole solving budget (plan.solve_budget_s=0.001)" in plan_.notes[-1]
    ctx = planning.Context(run.inputs, run.setting, run.demand, {})  # the default budget: not spent here
    check, ends, limits = _scripted_check([None, None], l4), [], []
    plan_ = planning.solve_verified(ctx, "carbon", run.inputs.pillars, econ, "t", "chosen")
    assert "budget" not in plan_.notes[-1] and limits[0] == pytest.approx(
        min(milp.TIME_LIMIT_S, run.inputs.solve_budget_s), abs=0.5)


def test_past_its_budget_a_blamed_gpu_type_is_taken_out_not_derated_step_by_step(run, monkeypatch):
    # Each round past the budget is a whole solve again (on a year, 40-50 s): a type that misses the
    # SLO once the budget is spent is taken out, so the next round is the last. Within the budget it
    # is derated by a step, as ever; and a type is never taken out where nothing would be left.
    from bench.carbon.planning import run as planning

    l4 = [c.candidate.name for c in run.setting.capacities if c.candidate.hardware == "l4"][0]
    econ = planning.economics_for(run.inputs, run.host_capacity, run.inputs.pillars)
    rounds = []
    real_solve = planning.solve
    monkeypatch.setattr(planning, "break_ties", lambda plan, solve_by=None: plan)

    def solve(*a, **k):
        rounds.append(dict(a[5] or {}))  # the derating each round is solved with
        return real_solve(*a, **k)
    monkeypatch.setattr(planning, "solve", solve)
    for budget_s, taken_out in ((1e-3, True), (35.0, False)):
        rounds.clear()
        monkeypatch.setattr(planning.Context, "check", _scripted_check(["l4", None, None, None], l4))
        ctx = planning.Context(dataclasses.replace(run.inputs, solve_budget_s=budget_s), run.setting, run.demand, {})
        plan_ = planning.solve_verified(ctx, "carbon", run.inputs.pillars, econ, "t", "chosen")
        second = rounds[1]
        l4s = [n for n in second if n.startswith("l4")]
        assert l4s and all((second[n].max() == 0) == taken_out for n in l4s)
        said = "l4 taken out (it still missed the SLO when the solving budget was spent)"
        assert (said in plan_.notes[-1]) == taken_out, plan_.notes[-1]
        if not taken_out:
            assert all(second[n].max() == pytest.approx(planning.DERATE) for n in l4s)
    # Only L4s open to the plan (rightsize off, an L4 reference): derated, not taken out, past the budget.
    ref = dataclasses.replace(run.setting, reference=l4)
    rounds.clear()
    monkeypatch.setattr(planning.Context, "check", _scripted_check(["l4", None, None, None], l4))
    ctx = planning.Context(dataclasses.replace(run.inputs, solve_budget_s=1e-3), ref, run.demand, {})
    planning.solve_verified(ctx, "carbon", dataclasses.replace(run.inputs.pillars, rightsize=False), econ, "t", "chosen")
    assert rounds[1][l4].max() == pytest.approx(planning.DERATE)


def _scripted_check(script: list, blamed: str):
    """A stand-in for `Context.check`: each call passes (None) or fails with `blamed` missing the
    SLO in its one hour, in the order `script` gives."""
    from bench.carbon.planning.verify import HourResult, Verification

    steps = iter(script)

    def check(self, plan, econ, quick=False, first=()):
        ok = next(steps) is None
        hour = HourResult(10 if ok else 5, 10, 1.0 if ok else 0.5, set() if ok else {blamed})
        v = Verification([hour], hour.attainment, hour.attainment, hour.worst_replica, {})
        plan.feasible, plan.verification = ok, v
        return v

    return check


def test_a_mixture_of_experts_on_tensor_parallel_replicas_is_flagged_in_the_report():
    from bench.carbon.planning.report import device_model_lines

    moe = dataclasses.replace(inputs(), model=serving.PRESETS["qwen3_30b_a3b"])  # 61 GB: one H100, four L4s
    text = "\n".join(device_model_lines(moe))
    assert "caution: Qwen3-30B-A3B is a mixture of experts on tensor-parallel replicas (l4)" in text
    assert "caution" not in "\n".join(device_model_lines(inputs()))  # a dense model: no such line
    hybrid = dataclasses.replace(inputs(), model=serving.PRESETS["nemotron_nano_9b_v2"])
    assert "caution: Nemotron-Nano-9B-v2 has Mamba-2 layers" in "\n".join(device_model_lines(hybrid))
