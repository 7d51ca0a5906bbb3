"""What the planner works on and returns: the setting (capacities, grid, load, host sizes), the
economics and a plan (the error when none can be made: `errors.py`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from bench.carbon.inputs import embodied
from bench.carbon.planning.pillars import Pillars
from bench.carbon.serving.capacity import Capacity

J_PER_KWH = 3.6e6
OBJECTIVES = ("carbon", "energy", "cost")  # what the MILP minimises (performance-optimal is a rule, baselines.py)


@dataclass(frozen=True)
class Economics:
    electricity_usd_per_kwh: float = 0.10  # illustrative; set your own
    host_cpu_capacity: Capacity | None = None  # offline requests per hour of one node's spare CPU cores


@dataclass
class Plan:
    name: str
    objective: str
    pillars: Pillars
    active: np.ndarray  # [H, C] active replicas
    online: np.ndarray  # [H, C] online requests served
    offline_gpu: np.ndarray  # [H, C]
    offline_cpu: np.ndarray  # [H]
    provisioned: np.ndarray  # [C] replicas
    nodes: np.ndarray  # [T] nodes per GPU type (`node_types`), shared by that type's candidates
    energy_kwh: float = 0.0
    operational_kg: float = 0.0
    embodied_gpu_kg: float = 0.0
    embodied_host_kg: float = 0.0
    cost_usd: float = 0.0
    attainment: float = math.nan  # simulated, filled by the verification
    notes: list[str] = field(default_factory=list)
    candidates: list[Capacity] = field(default_factory=list)
    hourly_energy_j: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latency: dict[str, float] = field(default_factory=dict)  # worst hour's TTFT/TPOT p50 and p99, simulated
    node_types: list[str] = field(default_factory=list)
    kind: str = "chosen"  # chosen | baseline | ablation
    feasible: bool = False  # its whole-fleet simulation met the SLO (in every hour, or over the period)
    worst_hour_attainment: float = math.nan
    worst_replica_attainment: float = math.nan  # the worst single replica in any hour
    solver_gap: float = math.nan  # relative MILP gap reached (NaN: not solved by the MILP)
    solver_hit_time_limit: bool = False
    # Planned with some candidate's capacity derated (`run.solve_verified`): its bound is of that
    # narrower problem, not a bound on plans that load those candidates more.
    derated: bool = False
    # Its first round's solve (never derated: every candidate at its full capacity) gave this lower
    # bound on its objective's modelled figure over every plan open to its levers (NaN: none).
    first_bound: float = math.nan
    solve_s: float = 0.0
    energy_method: str = ""  # where its GPU energy comes from (model before verification, simulation after)
    verification: object = None  # the whole-fleet simulation that judged it (`verify.Verification`)
    # The MILP behind a plan solved without its tie-breaks (`solver.solve(ties=False)`), for
    # `milp.break_ties`; for a long period solved without narrowing its bound (`narrow=False`), that
    # work (`milp.Narrowing`); None once done, or for a long period with nothing left to do.
    solver_state: object = field(default=None, repr=False, compare=False)

    @property
    def total_kg(self) -> float:
        return self.operational_kg + self.embodied_gpu_kg + self.embodied_host_kg

    @property
    def gpus(self) -> int:
        return int(sum(n * c.candidate.device.devices for n, c in zip(self.provisioned, self.candidates)))

    @property
    def node_count(self) -> int:
        return int(np.sum(self.nodes))


CPU_RESIDUE_REQUESTS = 0.5  # fewer offline requests on host CPUs over a plan are the LP's residue (~1e-5), no schedule


def offline_on_cpus(plan: "Plan") -> float:
    """Offline requests a plan puts on host CPUs over its period (0 where that is the LP's residue)."""
    total = float(plan.offline_cpu.sum())
    return total if total >= CPU_RESIDUE_REQUESTS else 0.0


@dataclass(frozen=True)
class Setting:
    """Everything the MILP needs besides the objective and pillars."""

    capacities: list[Capacity]
    intensity_g_per_kwh: np.ndarray  # [H]
    pue: float
    online_per_hour: np.ndarray  # [H] online requests of each hour (a scalar is every hour's)
    offline_per_hour: np.ndarray  # [H] offline arrivals of each hour
    deadline_h: int
    model_bytes: float
    kv_bytes: float
    lifetimes: embodied.Lifetimes
    embodied_level: str = "default"
    reference: str = ""  # candidate name used when rightsize is off
    recycle_extra_gpu_years: float = 2.0
