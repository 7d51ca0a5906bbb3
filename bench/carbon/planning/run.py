"""The planning run: candidates and their simulated capacities, the carbon-optimal plan with the
pillars asked for, the performance-, energy- and cost-optimal baselines, the ablation adding one
pillar at a time, and the simulated SLO attainment of every plan reported."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from bench.carbon import serving
from bench.carbon.inputs import embodied
from bench.carbon.inputs.grid import Intensity
from bench.carbon.inputs.workload import Workload
from bench.carbon.planning import feasibility, parallel
from bench.carbon.planning.baselines import MILP_BASELINES, performance_optimal
from bench.carbon.planning.blocks import BLOCKS_NOT_TRIED
from bench.carbon.planning.demand import Demand
from bench.carbon.planning.errors import PlanError
from bench.carbon.planning.milp import Narrowing, account, allowed_candidates, break_ties
from bench.carbon.planning.options import SOLVE_BUDGET_S
from bench.carbon.planning.pillars import ABLATION, Pillars, host_for, lifetimes_for
from bench.carbon.planning.setting import Economics, Plan, Setting, offline_on_cpus
from bench.carbon.planning.solver import solve
from bench.carbon.planning.verify import Verification, verify
from bench.carbon.serving import ModelSpec, StepCost, simulate_compiled
from bench.carbon.serving.capacity import Candidate, Capacity, capacity
from bench.carbon.serving.device import memory_bytes as gpu_memory_bytes
from bench.carbon.serving.simulate import Slo, simulate
from bench.profile.fit import Fit


@dataclass
class PlanInputs:
    model: ModelSpec
    workload: Workload
    intensity: Intensity
    slo: Slo
    gpus: list[str]
    max_batches: list[int]
    reference: str  # "<gpu>:<max_batch>"
    pillars: Pillars
    pue: float = 1.12
    deadline_h: int = 24
    lifetimes: embodied.Lifetimes = dataclasses.field(default_factory=embodied.Lifetimes)
    recycle_extra_gpu_years: float = 2.0
    electricity_usd_per_kwh: float = 0.10
    cpu_profile: object | None = None  # a loaded Profile for Reuse, or None
    host_spare_share: float = 0.9  # share of host cores free for offline work (hosts idle ~94%)
    dram_gb_per_s_per_socket: float = 460.8  # 12-channel DDR5-4800 theoretical peak
    embodied_level: str = "default"
    prefill_token_budgets: list[int] = dataclasses.field(default_factory=lambda: [0])  # 0: no cap
    gpu_profiles: dict = dataclasses.field(default_factory=dict)  # gpu type -> measured Profile (replaces datasheet)
    slo_scope: str = "hour"  # hour: the SLO holds in every hour; period: over the whole period
    routing: str = "round_robin"  # how an hour's requests are spread over the replicas (verify.py)
    workers: int = 0  # processes solving plans side by side (parallel.py): 0 one per core, 1 serially
    solve_budget_s: float = SOLVE_BUDGET_S  # MILP seconds per plan, its rounds together (`solve_verified`)


@dataclass
class PlanRun:
    inputs: PlanInputs
    capacities: list[Capacity]
    plans: list[Plan]  # carbon-optimal first, then baselines
    ablation: list[Plan]
    host_capacity: dict[str, Capacity | None]
    spread: dict[str, dict[str, float]]  # plan -> total kg at low/default/high embodied
    demand: Demand | None = None
    setting: Setting | None = None


def replica_gpus(model_weight_bytes: float, gpu: str) -> int:
    """GPUs of a type one replica of the model spans (tensor parallel): the smallest power of two whose
    memory holds 1.2x the weights (so at least a sixth of it is left for KV and activations)."""
    tp = max(1, math.ceil(model_weight_bytes * 1.2 / gpu_memory_bytes(gpu)))
    return 2 ** math.ceil(math.log2(tp))


def candidates(inputs: PlanInputs) -> list[Candidate]:
    out = []
    for gpu in inputs.gpus:
        mem = gpu_memory_bytes(gpu)  # as the driver reports it, all of it (the replay takes vLLM's share less its reserves)
        tp = replica_gpus(inputs.model.weight_bytes, gpu)
        measured = inputs.gpu_profiles.get(gpu)
        devices: list[tuple[str, serving.DeviceModel]]
        if measured is not None:
            idle = float(measured.table["device_idle_power_w"].median()) * tp
            base = _measured_device(measured, gpu, mem * tp, tp, idle,
                                    not_dense=bool(inputs.model.experts) or inputs.model.hybrid)
            base = dataclasses.replace(base, devices=tp, allreduce=serving.allreduce_table(gpu, tp),
                                       method=base.method + serving.allreduce_method(gpu, tp))
            devices = [("", base)] + [(f"@{f:g}MHz", d) for f, d in clocked(base, measured)]
        else:
            devices = [("", serving.datasheet(gpu, tp))]
        for clock, device in devices:
            for b in inputs.max_batches:
                for p in inputs.prefill_token_budgets:
                    name = f"{gpu}{f' x{tp}' if tp > 1 else ''}{clock}:{b}" + (f"/p{p}" if p else "")
                    out.append(Candidate(name, gpu, device, b, p))
    return out


def _measured_device(profile, gpu: str, memory_bytes: float, tp: int, idle_w: float, not_dense: bool = False
                     ) -> serving.DeviceModel:
    """The step composed from the profile's measured parts (GEMMs, attention, layer overheads)
    where it has them, else its attention rooflines alone (said in the method). A mixture of experts
    or a hybrid of layer kinds takes the rooflines: the linear and layer cases measure dense decoder layers."""
    try:
        if not_dense:
            raise ValueError("a mixture of experts or a hybrid of layer kinds: the linear and layer cases measure "
                             "dense decoder layers only")
        return serving.from_parts(profile, gpu, memory_bytes, scale=tp, idle_w=idle_w)
    except ValueError as err:  # no (or unusable) linear and layer fits: said in the method
        base = serving.from_profile(profile, gpu, memory_bytes, scale=tp, idle_w=idle_w)
        return dataclasses.replace(base, method=f"{base.method}; attention rooflines only, not composed ({err})")


def clocked(device: serving.DeviceModel, profile) -> list[tuple[float, serving.DeviceModel]]:
    """Rightsizing the SM clock, where the profile has frequency fits for both phases: at clock
    f, compute rate and per-flop energy follow the prefill fit's time and energy relative to the
    highest measured clock, bandwidth and per-byte energy the decode fit's (a model built on
    measured curves, said in the method). Without such fits: no clock choice."""
    if device.parts is not None:
        # The composed parts carry their own rates and energies; rescaling each by the clock fits is
        # not built yet, and scaling only the single roofline would leave the step unchanged.
        return []
    fits = profile.fits.get("frequency", {})
    phase = {}
    for name, fit in fits.items():
        kind = profile.phase_of(name.split("|")[0])  # frequency fits are keyed `<case>|<shape>`
        if kind not in ("prefill", "decode"):
            continue
        phase.setdefault(kind, (Fit.from_dict(fit["power"]), Fit.from_dict(fit["time"])))
    if set(phase) != {"prefill", "decode"}:
        return []
    clocks = sorted(profile.table["clock_mhz"].dropna().unique())
    top = max(clocks)

    def ratios(kind: str, f: float) -> tuple[float, float]:
        power, time = phase[kind]
        t = lambda x: time.params["t0_s"] + time.params["k_s_ghz"] * 1000.0 / x  # noqa: E731
        pw = lambda x: power.params["p_static_w"] + power.params["c_w"] * (x / 1000.0) ** power.params["a"]  # noqa: E731
        return t(f) / t(top), pw(f) * t(f) / (pw(top) * t(top))

    out = []
    for f in clocks:
        if f == top:
            continue
        tp_, ep = ratios("prefill", f)
        td, ed = ratios("decode", f)
        out.append((float(f), dataclasses.replace(
            device, flop_per_s=device.flop_per_s / tp_, bytes_per_s=device.bytes_per_s / td,
            e_flop_j=device.e_flop_j * ep, e_byte_j=device.e_byte_j * ed,
            method=device.method + f", SM {f:g} MHz from measured frequency fits (model)")))
    return out


def host_capacity(inputs: PlanInputs, host: embodied.Host) -> Capacity | None:
    """Offline requests per hour the spare cores of one node's host can serve, from the CPU
    profile scaled to those cores (rate and power linearly, bandwidth capped by DRAM)."""
    prof = inputs.cpu_profile
    if prof is None:
        return None
    cores_profiled = max(prof.meta.get("torch_threads") or prof.meta.get("host_logical_cores") or [1])
    cores = host.cpu_sockets * host.cores_per_socket * inputs.host_spare_share
    device = serving.from_profile(prof, "host_cpu", memory_bytes=host.dram_gb * 1e9 * 0.5, scale=cores / cores_profiled)
    cap_bw = inputs.dram_gb_per_s_per_socket * 1e9 * host.cpu_sockets
    if device.bytes_per_s > cap_bw:
        device = dataclasses.replace(device, bytes_per_s=cap_bw, method=device.method + ", DRAM bandwidth cap")
    cand = Candidate(f"host CPUs ({cores:g} cores)", "host_cpu", device, 64)
    if inputs.model.weight_bytes > device.memory_bytes:
        return Capacity(cand, 0.0, math.nan, 0.0, 0.0, 0, math.nan, math.nan, math.nan)
    w = inputs.workload
    if not w.offline.any():
        return None  # no offline work to put on host CPUs
    # A quarter hour of offline requests (at least 64 of them, where the trace has that many).
    first = w.offline & (w.arrival_s < 900)
    off = w.subset(first if first.sum() >= 64 else np.flatnonzero(w.offline)[:256])
    # Offline work only has to finish: measure throughput with a deep backlog (all at once).
    res = simulate(np.zeros(len(off.arrival_s)), off.prompt, off.output, StepCost.of(inputs.model, device), 64)
    served = len(off.arrival_s)
    return Capacity(cand, served / (res.busy_s / 3600.0), res.busy_energy_j / served, 0.0, 1.0, 0,
                    res.percentile("ttft_s", 50), res.percentile("tpot_s", 50),
                    float(np.nanmean(res.finish_s)))


def setting_of(inputs: PlanInputs, caps: list[Capacity], demand: Demand) -> Setting:
    w = inputs.workload
    # Tokens of KV a p99 request holds (sliding-window layers hold at most their window).
    held_tokens = float(inputs.model.attended_context(float(np.percentile(w.prompt + w.output, 99))))
    # (and a hybrid's Mamba state, a fixed size per request)
    kv = (inputs.model.kv_bytes_per_token * held_tokens + inputs.model.state_bytes_per_seq) * max(inputs.max_batches)
    online, offline = demand.counts()
    return Setting(caps, inputs.intensity.g_per_kwh, inputs.pue, online, offline, inputs.deadline_h,
                   inputs.model.weight_bytes, kv, inputs.lifetimes, embodied_level=inputs.embodied_level,
                   reference=_reference_name(inputs, caps), recycle_extra_gpu_years=inputs.recycle_extra_gpu_years)


def _reference_name(inputs: PlanInputs, caps: list[Capacity]) -> str:
    gpu, batch = inputs.reference.split(":")
    for c in caps:
        if c.candidate.hardware == gpu and c.candidate.max_batch == int(batch) and not c.candidate.max_prefill_tokens:
            return c.candidate.name
    raise PlanError(f"plan.reference={inputs.reference!r} is not among the candidates "
                    f"({', '.join(c.candidate.name for c in caps)})")


def economics_for(inputs: PlanInputs, hosts: dict[str, Capacity | None], pillars: Pillars) -> Economics:
    return Economics(inputs.electricity_usd_per_kwh, hosts["reduced" if pillars.levers().reduced_host else "reference"])


DERATE = 0.85  # a candidate whose replicas missed the SLO in an hour is re-planned at this share of its capacity
MAX_ROUNDS = 8
EXCLUDE_BELOW = 0.1  # a type derated below this share of its capacity is taken out of the plan


@dataclass
class Context:
    """What every plan of a run is solved and verified against."""

    inputs: PlanInputs
    setting: Setting
    demand: Demand
    cache: dict

    def check(self, plan: Plan, econ: Economics, quick: bool = False, first: tuple[int, ...] = ()) -> Verification:
        """Verify `plan` on the whole fleet and set its figures. `quick`: a plan that fails may be
        judged from hours cut short (`verify.verify`), for a round that re-plans it, simulating the
        hours `first` first; a plan that passes is always verified in full. Only with the SLO judged
        per hour."""
        i = self.inputs
        quick = quick and i.slo_scope == "hour"
        v = verify(plan, self.demand, i.model, i.slo, i.routing, self.cache, i.deadline_h, quick, first)
        if v.partial and not v.failing_hours(i.slo, i.slo_scope):  # cannot happen (a cut hour fails): stay exact
            v = verify(plan, self.demand, i.model, i.slo, i.routing, self.cache, i.deadline_h)
        plan.attainment, plan.worst_hour_attainment, plan.worst_replica_attainment = \
            v.attainment, v.worst_hour, v.worst_replica
        plan.latency = dict(v.latency)
        plan.feasible = not v.failing_hours(i.slo, i.slo_scope)
        plan.verification = v
        account(plan, plan.candidates, self.setting, plan.pillars, econ)  # the figures of the verified fleet
        return v


def solve_verified(ctx: Context, objective: str, pillars: Pillars, econ: Economics, name: str, kind: str) -> Plan:
    """Solve, simulate the whole fleet, and while an hour misses the SLO re-solve with the capacity
    of the candidates that missed it there derated; a plan that never meets it is infeasible."""
    H = len(ctx.setting.intensity_g_per_kwh)
    derate: dict[str, np.ndarray] = {}
    limit, solve_s = False, 0.0
    failed: list[int] = []  # hours that failed in earlier rounds, the latest first: a quick check tries them first
    streak: dict[str, int] = {}  # GPU type -> rounds in a row it was blamed
    out_of_budget: set[str] = set()  # GPU types taken out because the budget was spent while they missed
    stopped = ""
    # The plan's solving budget, its rounds' solves together (not their verification): each solve
    # gets what is left of it; past it each still gets a few seconds.
    budget_s = ctx.inputs.solve_budget_s

    def left_s() -> float:
        return max(0.0, budget_s - solve_s)
    for round_ in range(1, MAX_ROUNDS + 1):
        if round_ > 1 and not allowed_candidates(ctx.setting, pillars.levers(), derate):
            # Every candidate its levers allow is taken out: the last plan stands, infeasible, and is
            # verified in full (its round's check may have been cut short).
            ctx.check(plan, econ)
            stopped = "; re-planning stopped: every candidate its levers allow was taken out"
            round_ -= 1
            break
        # Ties are broken only once a plan meets the SLO: a round that fails needs none.
        # Nor is a long period's bound narrowed (`milp.Narrowing`) before the plan meets the SLO.
        solve_by = time.monotonic() + left_s()
        plan = solve(ctx.setting, objective, pillars, econ, name, derate, ties=False, solve_by=solve_by, narrow=False)
        modelled = getattr(plan, METRIC[objective])  # the figure its gap is of (the check replaces it)
        if round_ == 1:  # at full capacities: a bound on every plan open to its levers, kept for `adopt_better`
            first_bound = modelled * (1 - plan.solver_gap) if math.isfinite(plan.solver_gap) else math.nan
        planned_with = dict(derate)
        limit, solve_s = limit or plan.solver_hit_time_limit, solve_s + plan.solve_s
        # A round that fails is re-planned: its hours may be cut short once they fail (not the last round's).
        v = ctx.check(plan, econ, quick=round_ < MAX_ROUNDS, first=tuple(failed))
        failing = v.failing_hours(ctx.inputs.slo, ctx.inputs.slo_scope)
        failing_set = set(failing)
        failed = failing + [h for h in failed if h not in failing_set]
        if not failing:
            narrowing = isinstance(plan.solver_state, Narrowing)
            before_s, before_gap = plan.solve_s, plan.solver_gap
            tied = break_ties(plan, time.monotonic() + left_s())  # ties, or a long period's bound
            # A different plan's modelled figure and bound (before its check replaces the figure).
            tied_bound = getattr(tied, METRIC[objective]) * (1 - tied.solver_gap) if tied is not plan else math.nan
            solve_s += tied.solve_s - before_s
            # Another fleet at the same optimum is verified anew (the same fleet hits the cache);
            # if it misses the SLO, the verified fleet of the solve stands.
            vt = ctx.check(tied, econ, quick=True)  # kept only if it passes, and then verified in full
            if not vt.failing_hours(ctx.inputs.slo, ctx.inputs.slo_scope):
                plan = tied
            elif narrowing:  # a better plan the narrowing found missed: the round's plan, with the tighter bound
                if modelled > 0 and math.isfinite(tied_bound):
                    plan.solver_gap = min(before_gap, max(0.0, (modelled - tied_bound) / modelled))
                plan.solver_state = None
                if plan.notes and plan.notes[-1].endswith(BLOCKS_NOT_TRIED):  # they were tried, on its copy
                    plan.notes[-1] = plan.notes[-1][:-len(BLOCKS_NOT_TRIED)]
                ctx.check(plan, econ)
                plan.notes.append("the plan the blocks found while narrowing its gap missed the SLO in the whole-fleet "
                                  "simulation: the round's own verified plan is kept, with their bound")
            else:
                ctx.check(plan, econ)  # its own figures back (a cache hit)
                plan.notes.append("the fewest-GPUs/nodes fleet at the same optimum missed the SLO in the "
                                  "whole-fleet simulation: the solve's own verified fleet is kept, ties unbroken")
            break
        # The capacity estimates of the GPU type that missed were too high (the trace's bursts and
        # long prompts weigh on all its batch caps alike): all its candidates are derated, in every
        # hour, since derating one candidate or one hour lets the solver move the load to another.
        # A type blamed round after round is derated faster (DERATE to the power of its streak): a
        # miss that persists is not a matter of a few percent (hours of a few dozen online requests
        # may miss none at 99%), and the rounds are few. Below EXCLUDE_BELOW of its capacity it is
        # taken out: what it still misses there is not load (a request's latency on it sits at the
        # SLO), and more replicas of it would only multiply idle power.
        missed = set().union(*(v.missed_in(h) for h in failing))
        types = {c.candidate.hardware for c in ctx.setting.capacities if c.candidate.name in missed}
        if not types:  # nothing to derate (no GPU type blamed): a re-plan would be the same plan
            break
        streak = {t: streak.get(t, 0) + 1 for t in types}
        for c in ctx.setting.capacities:
            if c.candidate.hardware in types:
                share = derate.get(c.candidate.name, np.ones(H)) * DERATE ** streak[c.candidate.hardware]
                derate[c.candidate.name] = share if share.max() >= EXCLUDE_BELOW else np.zeros(H)
        # Past the plan's budget a type still blamed is taken out, not derated step by step: each round
        # past it is a whole long solve (a diurnal day over a year: 33-53 s a round, four rounds), and
        # the rounds must end. Not where that would leave the plan no candidate: it is derated as before.
        if left_s() <= 0:
            out = {**derate, **{c.candidate.name: np.zeros(H) for c in ctx.setting.capacities
                                if c.candidate.hardware in types}}
            if allowed_candidates(ctx.setting, pillars.levers(), out):
                # (a type the step took below EXCLUDE_BELOW anyway is out for that reason, said so)
                out_of_budget |= {c.candidate.hardware for c in ctx.setting.capacities
                                  if c.candidate.hardware in types and derate[c.candidate.name].max() > 0}
                derate = out
    plan.kind, plan.solver_state = kind, None  # a plan that never met the SLO keeps no tie-break to do
    # The gap is the reported plan's own solve's (its round's problem, derated as planned; its bound
    # narrowed once it met the SLO): earlier rounds' plans were re-planned, and their gaps, before
    # any narrowing, say nothing of it. The time-limit flag is any round's.
    plan.solver_hit_time_limit, plan.solve_s = limit or plan.solver_hit_time_limit, solve_s
    plan.derated, plan.first_bound = bool(planned_with), first_bound
    shares = sorted({(c.candidate.hardware, float(d.max())) for c in ctx.setting.capacities
                     for n, d in planned_with.items() if n == c.candidate.name})
    said = [f"{t} at {share:.0%} of its simulated capacity" if share > 0 else
            f"{t} taken out (it still missed the SLO " + ("when the solving budget was spent)" if t in out_of_budget else
                                                         f"below {EXCLUDE_BELOW:.0%} of its simulated capacity)")
            for t, share in shares]
    plan.notes.append(f"verified by whole-fleet simulation in {round_} round(s)" +
                      (" (re-planned with " + "; ".join(said) + ")" if said else "") +
                      ("" if plan.feasible else f"; still missing the SLO (worst hour {plan.worst_hour_attainment:.2%}"
                       f"{_late(plan)}): infeasible, not ranked") + stopped
                      + (f"; its solves took the whole solving budget (plan.solve_budget_s={budget_s:g})"
                         if solve_s >= budget_s else ""))
    return plan


def _late(plan: Plan) -> str:
    misses = int(plan.verification.deadline_misses.sum()) if plan.verification is not None else 0
    return f", {misses} offline requests past their deadline" if misses else ""


def _closest(caps: list[Capacity]) -> str:
    best = max(caps, key=lambda c: c.attainment)
    return f"closest: {best.candidate.name} with {best.attainment:.1%} of online requests within the SLO"


def _refuse_infeasible(inputs: PlanInputs, cands: list[Candidate], demand: Demand) -> None:
    bad = feasibility.check(cands, inputs.model, demand, inputs.slo, inputs.slo_scope)
    if bad is not None:
        where = "in the worst hour" if bad.scope == "hour" else "over the period"
        raise PlanError(f"{bad.count} of {bad.online} online requests {where} cannot meet the SLO (TTFT <= "
                        f"{inputs.slo.ttft_s:g} s, TPOT <= {inputs.slo.tpot_s:g} s) even alone on an empty replica of any "
                        f"candidate; the {inputs.slo.attainment:.0%} target allows {bad.allowed}; closest: {bad.closest} "
                        f"({bad.closest_share:.1%} of them alone)")


def run(inputs: PlanInputs) -> PlanRun:
    H = len(inputs.intensity.g_per_kwh)
    # The compiled simulation loop, once, here: the workers forked below inherit it instead of each compiling it.
    simulate_compiled.warm()
    demand = Demand.of(inputs.workload, H)
    cands = candidates(inputs)
    _refuse_infeasible(inputs, cands, demand)
    sized_on = demand.busiest_hour()
    caps = parallel.run_all([lambda c=c: capacity(c, inputs.model, sized_on, inputs.slo) for c in cands], inputs.workers)
    if not any(c.feasible for c in caps):
        raise PlanError(f"no configuration meets the SLO (TTFT <= {inputs.slo.ttft_s:g} s, TPOT <= "
                        f"{inputs.slo.tpot_s:g} s for {inputs.slo.attainment:.0%} of online requests); {_closest(caps)}")
    setting = setting_of(inputs, caps, demand)
    per_node = int(embodied.gpus().loc[inputs.gpus[0], "gpus_per_node"])
    hosts = {"reference": host_capacity(inputs, embodied.REFERENCE_HOST),
             "reduced": host_capacity(inputs, embodied.reduced_host(setting.model_bytes, setting.kv_bytes, per_node))}
    ctx = Context(inputs, setting, demand, {})
    none = Pillars.none()

    # Every plan asked for: the carbon-optimal one, the MILP baselines, the ablation steps.
    asked = [("carbon", inputs.pillars, "carbon-optimal", "chosen")]
    asked += [(b.objective, inputs.pillars, b.name, "baseline") for b in MILP_BASELINES]
    asked += [("carbon", none, "none", "ablation")]
    asked += [("carbon", none.with_on(*ABLATION[:i + 1]), f"+{p}", "ablation") for i, p in enumerate(ABLATION)]
    # The same objective and pillars is the same problem (the last ablation step is the carbon
    # plan when every pillar is on): solved and verified once, reported under each name.
    key = lambda objective, pillars: (objective, tuple(getattr(pillars, f.name) for f in dataclasses.fields(Pillars)))  # noqa: E731
    first: dict[tuple, tuple] = {}
    for a in asked:
        first.setdefault(key(a[0], a[1]), a)
    jobs = {k: (lambda a=a: solve_verified(ctx, a[0], a[1], economics_for(inputs, hosts, a[1]), a[2], a[3]))
            for k, a in first.items()}
    jobs["performance"] = lambda: performance_optimal(ctx, economics_for(inputs, hosts, none))
    # The longest first, so the last to start are short: flat objectives (energy, cost) are the
    # MILP's hardest, then the carbon plan with every lever; the performance baseline solves nothing
    # but simulates a fleet sized for the peak in every hour, as long as a plan's rounds.
    order = sorted(jobs, key=lambda k: (0 if k[0] == "energy" else 1 if k == key("carbon", inputs.pillars)
                                        else 2 if k[0] == "cost" or k == "performance" else 3))
    done = dict(zip(order, parallel.run_all([jobs[k] for k in order], inputs.workers)))

    def planned(objective: str, pillars: Pillars, name: str, kind: str) -> Plan:
        same = done[key(objective, pillars)]
        if same.name == name:
            return same
        return dataclasses.replace(same, name=name, kind=kind, pillars=dataclasses.replace(pillars),
                                   notes=same.notes + [f"the same objective and pillars as {same.name}: its plan"])

    carbon = planned(*asked[0])
    baselines = [done["performance"]] + [planned(*a) for a in asked[1:1 + len(MILP_BASELINES)]]
    ablation = [planned(*a) for a in asked[1 + len(MILP_BASELINES):]]
    solved = [carbon] + baselines + ablation
    econ_of = lambda pillars: economics_for(inputs, hosts, pillars)  # noqa: E731
    carbon = adopt_better(carbon, [o for o in solved if o is not carbon], ctx, econ_of)

    baselines[1:] = [adopt_better(b, donors(b, carbon, solved), ctx, econ_of) for b in baselines[1:]]
    ablation = [adopt_better(a, donors(a, carbon, solved), ctx, econ_of) for a in ablation]
    plans = [carbon] + baselines
    spread = {p.name: embodied_spread(p, setting, inputs) for p in plans}
    return PlanRun(inputs, caps, plans, ablation, hosts, spread, demand, setting)


METRIC = {"carbon": "total_kg", "energy": "energy_kwh", "cost": "cost_usd"}
OWN_MILP = "'s own MILP"  # a donor named as a plan's own MILP solve ("the none's own MILP plan")


def donors(target: Plan, carbon: Plan, solved: list[Plan]) -> list[Plan]:
    """The plans `target` may adopt: the carbon row where it adopted one (`carbon` is not the first
    of `solved`, the plans as their own solves made them), then every other solved plan as its own
    MILP solve made it, named so (its row may show an adopted plan by the end: naming the row would
    point at another fleet)."""
    out = [] if carbon is solved[0] else [carbon]
    return out + [dataclasses.replace(o, name=o.name + OWN_MILP) for o in solved if o is not target]


def _within_levers(other: Pillars, plan: Pillars) -> bool:
    """Every pillar `other` uses is on for `plan`: its fleet and schedule are open to `plan` too."""
    return all(getattr(plan, f.name) or not getattr(other, f.name) for f in dataclasses.fields(Pillars))


ADOPT_REL_TOL = 1e-7  # a plan adopts one better on its objective by more than this share (rounding is below)


def adopt_better(plan: Plan, others: list[Plan], ctx: Context, econ_of) -> Plan:
    """A plan optimal for its objective is the best SLO-meeting plan on that objective among those
    open to its levers: another verified plan whose pillars are a subset of its own (its fleet and
    schedule are choices this plan could make), counted again under this plan's pillars, that is
    better on the objective (the solver's gap, another re-planning path, or this plan's own
    re-planning that never met the SLO) is adopted under this plan's name, and the plan says so."""
    metric = METRIC[plan.objective]
    best, best_value = None, getattr(plan, metric) if plan.feasible else math.inf
    for other in others:
        if not other.feasible or not _within_levers(other.pillars, plan.pillars):
            continue
        if offline_on_cpus(other) and other.pillars.reduce != plan.pillars.reduce:
            continue  # its CPU schedule was sized for another host
        counted = dataclasses.replace(other, pillars=plan.pillars, notes=list(other.notes))
        account(counted, counted.candidates, ctx.setting, plan.pillars, econ_of(plan.pillars))
        # Better by more than rounding (ADOPT_REL_TOL): a plan that emits 4.6e-7 more than a feasible
        # baseline open to its levers is not carbon-optimal (a fuzzed trace showed one, "adds 0.0%"); near
        # 1e-9, the same plan summed in another order (an ablation step adopted it, and read a gap of -1e-9).
        if getattr(counted, metric) < best_value * (1 - ADOPT_REL_TOL):
            best, best_value = (other, counted), getattr(counted, metric)
    if best is None:
        return plan
    other, counted = best
    why = "which never met the SLO" if not plan.feasible else f"{getattr(plan, metric):.6g}"
    why += f"; its gap {plan.solver_gap:.2%}" if math.isfinite(plan.solver_gap) else ""
    # The gap, on the MILP's model as every gap is: the adopted plan's modelled figure against this
    # plan's own bound (its modelled figure less its gap), a bound on every plan open to its levers
    # where its solve was not derated (the adopted plan keeps to every candidate's full capacity).
    # A derated solve's bound is of a narrower problem: its first round's stands in (below). Never
    # the adopted plan's own gap, which is of its objective and levers (a plan without Shift, exact for its own problem,
    # is not shown optimal for one with Shift by it: the carbon plan of a diurnal year read 0.00%).
    # (Comparing the verified figure with a modelled bound had mixed the two.)
    def modelled(p: Plan) -> float:
        q = dataclasses.replace(p, pillars=plan.pillars, verification=None, notes=[])
        account(q, q.candidates, ctx.setting, plan.pillars, econ_of(plan.pillars))
        return getattr(q, metric)
    # Where its last solve was derated, its first round's (at full capacities) bounds every plan
    # open to its levers instead: looser, maybe, but a bound (it was unknown before).
    gap, own_bound, against = math.nan, math.nan, "this plan's own bound"
    if plan.derated and math.isfinite(plan.first_bound):
        own_bound, against = plan.first_bound, "this plan's first-round bound (its last solve was derated)"
    elif plan.derated:
        unknown = "this plan's own solve was derated, and its first round gave no bound"
    elif not math.isfinite(plan.solver_gap):
        unknown = "this plan's own solve gave no bound"
    else:
        own_bound = modelled(plan) * (1 - plan.solver_gap)
    if math.isfinite(own_bound):
        adopted_model = modelled(other)
        # Below the bound is impossible for a true one (near-copies merged within 1% make it one of
        # the merged set): unknown, not a 0 that hides it.
        if adopted_model < own_bound * (1 - 1e-6):
            unknown = f"its modelled figure is below {against}, of the candidates merged within 1%"
        elif adopted_model <= 0:
            unknown = "its modelled figure is zero"
        else:
            gap = max(0.0, (adopted_model - own_bound) / adopted_model)  # (within 1e-6 below: rounding, 0)
    return dataclasses.replace(
        counted, name=plan.name, objective=plan.objective, kind=plan.kind, solver_gap=gap, derated=plan.derated,
        first_bound=plan.first_bound,
        solver_hit_time_limit=plan.solver_hit_time_limit or counted.solver_hit_time_limit,
        solve_s=plan.solve_s,
        # Its own solve's notes, said to be of the plan it replaced, then what it adopted (the adopted
        # plan's solve is in that plan's row; carried here, its notes read as this plan's: a cost plan
        # "taken in order of embodied carbon").
        notes=[f"its own MILP plan, not the one reported: {'; '.join(plan.notes)}"]
        + [f"the {other.name} plan, verified and counted with this plan's pillars, is better on {metric} "
           f"({best_value:.6g}) than this objective's own MILP plan ({why}): adopted (how it was solved: the "
           f"{other.name.removesuffix(OWN_MILP)} row's notes; " + (f"its gap: its modelled figure against {against})" if math.isfinite(gap)
                                    else f"its gap unknown: {unknown})")])


def embodied_spread(plan: Plan, setting: Setting, inputs: PlanInputs) -> dict[str, float]:
    """Total carbon of the same plan with low, default and high embodied figures."""
    out = {}
    levers = plan.pillars.levers()
    H = len(setting.intensity_g_per_kwh)
    for level in embodied.LEVELS:
        emb = 0.0
        for j, cap in enumerate(plan.candidates):
            hw = cap.candidate.hardware
            g, h = embodied.node_kg_per_hour(hw, 1, host_for(setting, hw, levers), lifetimes_for(setting, hw, levers),
                                             level)
            emb += H * plan.provisioned[j] * cap.candidate.device.devices * g
        for t, hw in enumerate(plan.node_types):
            _, h = embodied.node_kg_per_hour(hw, 1, host_for(setting, hw, levers), lifetimes_for(setting, hw, levers),
                                             level)
            emb += H * plan.nodes[t] * h
        out[level] = plan.operational_kg + emb
    return out
