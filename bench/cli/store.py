"""Registration in Hydra's ConfigStore: the schema, one `kernel` group option per registered
case (adding a case to the registry is all it takes to select it), `custom`, and our sweeper."""
from __future__ import annotations

from hydra.core.config_store import ConfigStore

from bench.cli.schema import BenchConf, KernelConf
from bench.cli.sweeper import ValidatingSweeperConf
from kernels import REGISTRY
from kernels.custom import CUSTOM_KERNEL


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="bench_schema", node=BenchConf)
    for case in REGISTRY:
        cs.store(group="kernel", name=case.name, node=KernelConf(name=case.name))
    cs.store(group="kernel", name=CUSTOM_KERNEL, node=KernelConf(name=CUSTOM_KERNEL))
    cs.store(group="hydra/sweeper", name="bench", node=ValidatingSweeperConf, provider="bench")
