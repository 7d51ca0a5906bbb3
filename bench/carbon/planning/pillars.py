"""EcoServe's pillars as small objects, each saying the one lever of a plan it changes.

A selection of pillars (`Pillars`, what `plan.pillars.*` sets) folds into `Levers`: everything
the solver and the accounting may choose. Nothing else reads the pillar booleans, so what a
pillar does is written once, here.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from bench.carbon.inputs import embodied

if TYPE_CHECKING:
    from bench.carbon.planning.setting import Setting


@dataclass(frozen=True)
class Levers:
    """What a plan may choose; the defaults are a plan with no pillar on."""

    any_candidate: bool = False  # off: only the reference configuration
    reduced_host: bool = False  # off: the reference HGX host
    offline_on_host_cpus: bool = False
    hosts_outlive_gpus: bool = False  # off: hosts are replaced with the GPUs, no generation kept longer
    offline_within_deadline: bool = False  # off: offline requests are served in the hour they arrive


@dataclass(frozen=True)
class Pillar:
    name: str
    changes: str  # what it changes, in words the report can use
    lever: str  # the `Levers` field it turns on

    def apply(self, levers: Levers) -> Levers:
        return replace(levers, **{self.lever: True})


PILLARS: tuple[Pillar, ...] = (
    Pillar("rightsize", "choose GPU type, batch caps and clock (off: the reference configuration only)",
           "any_candidate"),
    Pillar("reduce", "hosts sized to the workload (off: the reference HGX host)", "reduced_host"),
    Pillar("reuse", "offline requests may run on the hosts' spare CPU cores", "offline_on_host_cpus"),
    Pillar("recycle", "hosts outlive GPUs; older GPU generations kept longer", "hosts_outlive_gpus"),
    Pillar("shift", "offline requests may move to low-carbon hours within their deadline", "offline_within_deadline"),
)
ABLATION = tuple(p.name for p in PILLARS)  # the order the ablation adds them in


@dataclass
class Pillars:
    """Which pillars are on (`plan.pillars.*`: the CLI's schema node, so not frozen)."""

    rightsize: bool = True
    reduce: bool = True
    reuse: bool = True
    recycle: bool = True
    shift: bool = True

    @classmethod
    def none(cls) -> "Pillars":
        return cls(**{f.name: False for f in fields(cls)})

    def with_on(self, *names: str) -> "Pillars":
        return replace(self, **{n: True for n in names})

    def levers(self) -> Levers:
        levers = Levers()
        for pillar in PILLARS:
            if getattr(self, pillar.name):
                levers = pillar.apply(levers)
        return levers


def host_for(s: "Setting", hardware: str, levers: Levers) -> embodied.Host:
    """The host of a node of `hardware` GPUs (Reduce sizes it to the workload)."""
    if not levers.reduced_host:
        return embodied.REFERENCE_HOST
    per_node = int(embodied.gpus().loc[hardware, "gpus_per_node"])
    return embodied.reduced_host(s.model_bytes, s.kv_bytes, per_node)


def lifetimes_for(s: "Setting", hardware: str, levers: Levers) -> embodied.Lifetimes:
    """GPU and host lifetimes (Recycle keeps hosts longer, and older GPU generations longer)."""
    if not levers.hosts_outlive_gpus:
        return embodied.Lifetimes(s.lifetimes.gpu_years, s.lifetimes.gpu_years)  # hosts replaced with GPUs
    older = str(embodied.gpus().loc[hardware, "kept_from_previous_generation"]).lower() == "true"
    return embodied.Lifetimes(s.lifetimes.gpu_years + (s.recycle_extra_gpu_years if older else 0.0), s.lifetimes.host_years)
