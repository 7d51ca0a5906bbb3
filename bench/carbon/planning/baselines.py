"""The baselines the carbon-optimal plan is held against, each a design point a practitioner
would pick: the same SLO and candidates, Rightsize only, optimising latency, energy or cost."""
from __future__ import annotations

from dataclasses import dataclass

from bench.carbon.planning.pillars import Pillars


@dataclass(frozen=True)
class Baseline:
    name: str
    objective: str  # what the MILP minimises (`bench.carbon.planning.setting.OBJECTIVES`)
    pillars: Pillars
    says: str  # what it stands for, in the report's words


BASELINES: tuple[Baseline, ...] = tuple(
    Baseline(f"{objective}-optimal", objective, Pillars.none().with_on("rightsize"), says)
    for objective, says in (("performance", "the lowest request latency"), ("energy", "the least energy"),
                            ("cost", "the least cost (GPU hours and electricity)"))
)
