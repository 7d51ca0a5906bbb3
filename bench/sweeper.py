"""Validation shared by the sweeper plugin (`hydra_plugins.bench_sweeper`), the run callback and
the task entry: one line naming the field, exit status 2, nothing measured or written."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional


@dataclass
class ValidatingSweeperConf:
    _target_: str = "hydra_plugins.bench_sweeper.validating_sweeper.ValidatingSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    grids: Optional[List[Dict[str, Any]]] = None  # each expanded as a product, then concatenated
    order: str = "random"  # random (seeded) | grid
    seed: int = 0


def exit_if_invalid(cfg: Any, context: str = "") -> None:
    """Validate one composed config; on error print one line and exit with status 2."""
    from bench.validation import ConfigError, validate

    try:
        validate(cfg)
    except ConfigError as err:
        print(f"bench: {err}{context}", file=sys.stderr)
        raise SystemExit(2) from None
