"""Registration in Hydra's ConfigStore: the schema, one `kernel` group option per registered
case (adding a case to the registry is all it takes to select it), `custom`, one `arch` option
per layer-width preset (`kernels.arch.ARCHS`), and our sweeper;
and the `${pid:}` resolver, so each process has its own run and sweep folder."""
from __future__ import annotations

import dataclasses
import os

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from bench.cli.schema import BenchConf, KernelConf
from bench.cli.sweeper import ValidatingSweeperConf
from kernels import REGISTRY
from kernels.arch import ARCHS
from kernels.custom import CUSTOM_KERNEL


def register_configs() -> None:
    # Two runs started in the same second into one results_dir would share a log folder (and a
    # sweep's multirun.yaml) if it were named by time alone.
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConf)
    for case in REGISTRY:
        cs.store(group="kernel", name=case.name, node=KernelConf(name=case.name))
    cs.store(group="kernel", name=CUSTOM_KERNEL, node=KernelConf(name=CUSTOM_KERNEL))
    # `arch=<preset>` sets the layer widths from the one table of them (a later key still wins).
    for name, dims in ARCHS.items():
        cs.store(group="arch", name=name, node=dataclasses.asdict(dims), package="_global_")
    cs.store(group="hydra/sweeper", name="bench", node=ValidatingSweeperConf, provider="bench")
