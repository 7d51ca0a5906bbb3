"""Host power of a GPU node (its CPUs and DRAM): a labelled model, for the node scope of energy
per token. Nothing here is measured: a node's host is never metered by this planner.

- CPUs: codecarbon's whole-machine load model (codecarbon 3.x `CPU._get_power_from_cpu_load`):
  TDP x (0.1 + 0.9 u^3) per socket at utilisation u, TDP from codecarbon's bundled
  `cpu_power.csv` for the host's part. Its 10% floor is below what real server sockets draw
  idle, so at the low utilisation of a GPU node's host it is more likely low than high.
- DRAM: codecarbon 3.x's RAM model (`RAM._calculate_ram_power`, x86): 5 W per DIMM with a
  falling marginal power past 4, 8 and 16 DIMMs, the DIMM count estimated from the capacity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from bench.common.cpu_tdp import lookup_tdp, tdp_table

METHOD = "model:codecarbon_host(cpu tdp x (0.1 + 0.9 u^3) + ram 5 W per dimm)"
W_PER_DIMM = 5.0  # codecarbon.external.ram.RAM_SLOT_POWER_X86
DIMM_SIZES_GB = (4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class HostPower:
    cpu_w: float
    dram_w: float
    method: str
    tdp_source: str

    @property
    def total_w(self) -> float:
        return self.cpu_w + self.dram_w


def dimm_count(total_gb: float) -> int:
    """codecarbon 3.x's estimate of the DIMMs holding `total_gb`."""
    if total_gb <= 2:
        return 1
    if total_gb <= 16:
        return 2
    if total_gb <= 32:
        return 4
    if total_gb <= 64:
        return 4
    if total_gb <= 128:
        return 8
    for size in sorted(DIMM_SIZES_GB, reverse=True):
        if size <= total_gb / 8:  # at least 8 DIMMs in a large server
            return min(math.ceil(total_gb / size), 32)
    return 8


def dram_w(total_gb: float) -> float:
    n = dimm_count(total_gb)
    # Full power for the first 4 DIMMs, 90% for the next 4, 80% up to 16, 70% beyond.
    tiers = ((4, 1.0), (4, 0.9), (8, 0.8), (math.inf, 0.7))
    power, left = 0.0, n
    for size, share in tiers:
        take = min(left, size)
        power += W_PER_DIMM * share * take
        left -= take
        if left <= 0:
            break
    return max(2 * W_PER_DIMM, power)


def cpu_w(tdp_w: float, utilisation: float) -> float:
    return tdp_w * (0.1 + 0.9 * min(max(utilisation, 0.0), 1.0) ** 3)


def of(host, utilisation: float) -> HostPower:
    """Power of one node's host at CPU `utilisation` (0-1). `host`: an `embodied.Host`."""
    match = lookup_tdp(host.cpu_model, tdp_table())
    if match is None:
        raise ValueError(f"host CPU {host.cpu_model!r} is not in codecarbon's CPU table")
    return HostPower(host.cpu_sockets * cpu_w(match.tdp_w, utilisation), dram_w(host.dram_gb), METHOD,
                     f"TDP {match.tdp_w:g} W per socket: codecarbon cpu_power.csv {match.how} '{match.matched}'")
