"""What `python -m bench task=<name>` runs."""
from __future__ import annotations

from typing import Any, Callable

from bench.tasks import measure

TASKS: dict[str, Callable[[Any], Any]] = {"measure": measure.run}
