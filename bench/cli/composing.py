"""Hydra's composition of this project's config, made cheaper where Hydra does work twice.

One composition where Hydra would make two. Hydra 1.3 composes the primary config once to read
`hydra.mode` (`Hydra.get_mode`) and then, for a multirun, composes it again with the same
overrides (`Hydra.multirun`); each composition of this project's config takes about 0.2 s, a third
of what a bad input cost before its one-line refusal. `install` keeps `get_mode` as Hydra has it
(the same composition, sweep overrides not checked, None where it fails) and hands its config to
the multirun's own load, once, where that load's arguments are the same: the multirun's check of
its sweep overrides (Hydra's own, on the parsed overrides) runs first, as inside a composition.
Anything else (a run mode, overrides Hydra changed in between) composes as before, so results,
errors and their wording are Hydra's own.

The ConfigStore shared, not copied. Every composition deep-copies Hydra's config repository (to
keep its list of sources apart) and with it the whole ConfigStore: this project's schema and a
node per kernel case and architecture preset, 15-35% of a composition. Composing only reads the
store, and each load deep-copies the node it returns, so the copy shares the store instead.
"""
from __future__ import annotations

from typing import Any, List, Optional

from hydra._internal.hydra import Hydra
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode


def install() -> None:
    ConfigStore.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]
    if getattr(Hydra.get_mode, "bench_compose_once", False):
        return

    def get_mode(self: Hydra, config_name: Optional[str], overrides: List[str]) -> Any:
        """`Hydra.get_mode`, keeping the configuration it composed for the multirun's load."""
        loader = self.config_loader
        try:
            cfg = loader.load_configuration(config_name=config_name, overrides=overrides, run_mode=RunMode.MULTIRUN,
                                            from_shell=True, validate_sweep_overrides=False)
            mode = cfg.hydra.mode
        except Exception:  # as Hydra's: the run then composes again and raises its error
            return None
        _hand_over(loader, dict(config_name=config_name, overrides=list(overrides), run_mode=RunMode.MULTIRUN,
                                from_shell=True, validate_sweep_overrides=True), cfg)
        return mode

    get_mode.bench_compose_once = True  # type: ignore[attr-defined]
    Hydra.get_mode = get_mode  # type: ignore[method-assign]


def _hand_over(loader: Any, args: dict, cfg: Any) -> None:
    """The loader's next `load_configuration` returns `cfg` if called with `args` (by keyword, as
    `Hydra.compose_config` calls it) once its sweep overrides pass Hydra's check, else composes;
    either way only once."""
    def load_configuration(*positional: Any, **kwargs: Any) -> Any:
        del loader.load_configuration  # the class's own method again
        if positional or {**kwargs, "overrides": list(kwargs.get("overrides", []))} != args:
            return loader.load_configuration(*positional, **kwargs)
        parsed = OverridesParser.create().parse_overrides(overrides=args["overrides"])
        loader.validate_sweep_overrides_legal(overrides=parsed, run_mode=args["run_mode"], from_shell=args["from_shell"])
        return cfg

    loader.load_configuration = load_configuration
