"""One composition of a command's config where Hydra would make two.

Hydra 1.3 composes the primary config once to read `hydra.mode` (`Hydra.get_mode`) and then, for a
multirun, composes it again with the same overrides (`Hydra.multirun`); each composition of this
project's config takes about 0.2 s, a third of what a bad input costs before its one-line refusal.
`install` makes `get_mode` compose as the multirun will (sweep overrides validated) and hand that
config to the multirun's own load, once, where its arguments are the same; anything else (a run
mode, overrides Hydra changed in between, a composition that fails) composes as before, so errors
and their wording are Hydra's own.
"""
from __future__ import annotations

from typing import Any, List, Optional

from hydra._internal.hydra import Hydra
from hydra.types import RunMode


def install() -> None:
    if getattr(Hydra.get_mode, "bench_compose_once", False):
        return
    hydra_get_mode = Hydra.get_mode

    def get_mode(self: Hydra, config_name: Optional[str], overrides: List[str]) -> Any:
        loader = self.config_loader
        args = dict(config_name=config_name, overrides=list(overrides), run_mode=RunMode.MULTIRUN, from_shell=True,
                    validate_sweep_overrides=True)
        try:
            cfg = loader.load_configuration(**args)
        except Exception:  # Hydra's own path: its get_mode composes without validating sweeps, then the run fails
            return hydra_get_mode(self, config_name, overrides)
        _hand_over(loader, args, cfg)
        return cfg.hydra.mode

    get_mode.bench_compose_once = True  # type: ignore[attr-defined]
    Hydra.get_mode = get_mode  # type: ignore[method-assign]


def _hand_over(loader: Any, args: dict, cfg: Any) -> None:
    """The loader's next `load_configuration` returns `cfg` if called with `args` (by keyword, as
    `Hydra.compose_config` calls it), else composes; either way only once."""
    def load_configuration(*positional: Any, **kwargs: Any) -> Any:
        del loader.load_configuration  # the class's own method again
        if not positional and {**kwargs, "overrides": list(kwargs.get("overrides", []))} == args:
            return cfg
        return loader.load_configuration(*positional, **kwargs)

    loader.load_configuration = load_configuration
