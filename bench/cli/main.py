"""The Hydra entry (`python -m bench`): compose, convert the config once to the typed `BenchConf`,
validate, dispatch the task. Every way it can end is one of: the task's result (exit 0), a bad
input (one line naming the field, exit 2, before any work), a refusal at run time (one line,
exit 3), Ctrl-C (one line saying what was kept, exit 130, handled by `bench.__main__`)."""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

# Without a GPU, Triton kernels run in its interpreter (numpy on CPU tensors: correct, slow),
# which must be chosen before any kernel module is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from bench.carbon.planning.errors import PlanError  # noqa: E402
from bench.carbon.validation.measurements import MeasurementsError  # noqa: E402
from bench.cli import composing  # noqa: E402
from bench.cli.errors import PointFailed, hydra_error_line, is_hydra_input_error  # noqa: E402
from bench.cli.schema import to_typed  # noqa: E402
from bench.cli.store import register_configs  # noqa: E402
from bench.cli.validate import exit_if_invalid  # noqa: E402
from bench.measure.clocks import ClockError  # noqa: E402
from bench.measure.lock import DeviceBusy  # noqa: E402
from bench.measure.meters import MeterUnavailable  # noqa: E402
from bench.measure.meters.base import MeterFault  # noqa: E402
from bench.measure.protocol import MeasurementError  # noqa: E402
from bench.profile.build import ProfileError  # noqa: E402
from bench.tasks import TASKS  # noqa: E402

register_configs()
composing.install()

# Refusals a user can act on: one line and exit status 3, not a traceback (2 is a bad config).
REFUSALS = (ClockError, DeviceBusy, MeasurementError, MeterFault, MeterUnavailable, ProfileError, PlanError,
            MeasurementsError)
# Of those, the ones that concern one point (its windows kept failing, the GPU was busy then): in a
# sweep the next point may well succeed, so the sweep goes on and lists them at the end.
POINT_FAILURES = (MeasurementError, MeterFault)
RESULTS_DIRS: set[str] = set()  # where this process measured, for the Ctrl-C message


CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def hydra_main(composed: DictConfig) -> Any:
    RESULTS_DIRS.add(str(composed.results_dir))
    exit_if_invalid(composed)  # also checked before the sweep; cheap, and guards other launchers
    cfg = to_typed(composed)
    try:
        return TASKS[cfg.task](cfg)
    except REFUSALS as err:
        line = f"bench: {type(err).__name__}: {err}"
        print(line, file=sys.stderr)
        if isinstance(err, POINT_FAILURES) and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise PointFailed(line.removeprefix("bench: ")) from None  # the job fails; the sweep goes on
        raise SystemExit(3) from None


INTERRUPTED = False  # set by Ctrl-C, so an error it causes mid-operation is reported as the interrupt


def _on_sigint(signum: int, frame: object) -> None:
    global INTERRUPTED
    INTERRUPTED = True
    raise KeyboardInterrupt


def on_unraisable(hook):
    """A KeyboardInterrupt raised inside a callback Python cannot raise from (a weakref's, a
    finaliser's) is swallowed, with an 'Exception ignored ... Traceback' report: say nothing
    instead. The handler has set INTERRUPTED, which stops the run where it is next checked (a sweep
    before its next point, a plan or a validation before it writes its files:
    `bench.common.interrupt`, `entry` when the task returns). Re-sending the signal would not help:
    its handler would run inside this hook, and that raise is swallowed too."""
    def unraisable(info) -> None:
        if isinstance(info.exc_value, KeyboardInterrupt) and INTERRUPTED:
            return
        hook(info)
    return unraisable


def entry() -> None:
    """Run `hydra_main` with Hydra's input errors (a value of the wrong type, an unknown option
    or key, an unparsable override) turned into one line and exit status 2."""
    # Hydra re-raises instead of printing its multi-line report, so we can word it ourselves;
    # errors that are not about the input still end in a full traceback, as bugs should.
    global INTERRUPTED
    os.environ["HYDRA_FULL_ERROR"] = "1"
    INTERRUPTED = False  # a run in this process starts uninterrupted (an earlier one's Ctrl-C is not its)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        if not getattr(sys.unraisablehook, "bench_sigint", False):
            sys.unraisablehook = on_unraisable(sys.unraisablehook)
            sys.unraisablehook.bench_sigint = True
    try:
        hydra_main()
        if INTERRUPTED:  # a Ctrl-C whose KeyboardInterrupt was swallowed on the way (see the sweeper) still stops
            raise KeyboardInterrupt
    except Exception as err:
        if INTERRUPTED:  # Ctrl-C inside OmegaConf can surface as a config error: it is not one
            raise KeyboardInterrupt from None
        if not is_hydra_input_error(err):
            raise
        print(f"bench: {hydra_error_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
