"""Embodied carbon: a catalogue of GPUs and host components (low / default / high kgCO2e, each
with its source, `data/embodied.csv`), GPU datasheets (`data/gpus.csv`), node compositions, and
amortisation by time share: a component used for `h` hours of a `L`-year life carries
`kg x h / (L x 8760)`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "data"
HOURS_PER_YEAR = 8760.0
LEVELS = ("low", "default", "high")


@functools.cache
def catalogue() -> pd.DataFrame:
    return pd.read_csv(DATA / "embodied.csv").set_index("component")


@functools.cache
def gpus() -> pd.DataFrame:
    return pd.read_csv(DATA / "gpus.csv").set_index("gpu")


def kg(component: str, level: str = "default") -> float:
    if level not in LEVELS:
        raise ValueError(f"embodied level {level!r}: choose one of {LEVELS}")
    table = catalogue()
    if component not in table.index:
        raise KeyError(f"no embodied figure for {component!r}; catalogue has {list(table.index)}")
    return float(table.loc[component, f"{level}_kg"])


@dataclass(frozen=True)
class Host:
    """What a node holds besides its GPUs."""

    cpu_sockets: int
    cores_per_socket: int
    dram_gb: float
    ssd_gb: float
    nics: int = 1
    cpu_model: str = "Intel Xeon Platinum 8480+"  # for its TDP (the host power model, `host_power.py`)

    def kg(self, level: str = "default") -> float:
        return (self.cpu_sockets * kg("cpu_socket", level) + self.dram_gb * kg("dram", level)
                + self.ssd_gb * kg("ssd", level) + kg("platform", level) + self.nics * kg("nic_100g", level))


# The host of an 8-GPU HGX node as EcoServe's lab model describes it: 2 x 56-core CPUs, 2 TB
# DRAM, 22.7 TB SSD. The 56-core part: the Xeon Platinum 8480+ (NVIDIA's DGX H100 holds two 8480C).
REFERENCE_HOST = Host(cpu_sockets=2, cores_per_socket=56, dram_gb=2048, ssd_gb=22_700)


def reduced_host(model_bytes: float, kv_bytes: float, gpus_per_node: int) -> Host:
    """A host sized to the workload (Reduce): DRAM for the weights twice over (load and a spare
    copy) plus the peak KV cache, SSD for two model copies with 256 GB for the OS and logs, one
    socket of 32 cores per node (a 32-core AMD EPYC 9354, for its TDP)."""
    gb = 1e9
    dram = max(128.0, math.ceil((2 * model_bytes + kv_bytes) / gb / 64) * 64)
    ssd = max(480.0, math.ceil((2 * model_bytes / gb + 256) / 480) * 480)
    return Host(cpu_sockets=1, cores_per_socket=32, dram_gb=dram, ssd_gb=ssd, cpu_model="AMD EPYC 9354")


@dataclass(frozen=True)
class Lifetimes:
    gpu_years: float = 4.0
    host_years: float = 6.0


def amortised_kg(total_kg: float, hours: float, lifetime_years: float) -> float:
    """The share of `total_kg` that `hours` of use carry over a `lifetime_years` life."""
    if lifetime_years <= 0:
        raise ValueError(f"lifetime must be > 0 years, got {lifetime_years}")
    return total_kg * hours / (lifetime_years * HOURS_PER_YEAR)


def node_kg_per_hour(gpu: str, gpus_in_node: int, host: Host, lifetimes: Lifetimes, level: str = "default"
                     ) -> tuple[float, float]:
    """(GPU, host) embodied kgCO2e per hour of one node."""
    gpu_kg = kg(str(gpus().loc[gpu, "embodied_component"]), level) * gpus_in_node
    return amortised_kg(gpu_kg, 1.0, lifetimes.gpu_years), amortised_kg(host.kg(level), 1.0, lifetimes.host_years)
