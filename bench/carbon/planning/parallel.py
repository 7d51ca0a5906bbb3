"""Independent plans solved side by side, a process per core.

The plans of a run (the carbon-optimal one, each baseline, each ablation step) share their
inputs and nothing else: each is MILP solves and whole-fleet simulations, serial Python and
HiGHS. Forked workers inherit the jobs (nothing is pickled but the plans coming back), ignore
Ctrl-C (the parent stops them and says so), and a worker that dies leaves its job to the parent.
Results do not depend on the workers: each job is the same computation wherever it runs.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, TypeVar

T = TypeVar("T")

_JOBS: list[Callable[[], object]] | None = None  # the running map's jobs, inherited by its forked workers


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _run(i: int) -> object:
    assert _JOBS is not None
    return _JOBS[i]()


def run_all(jobs: list[Callable[[], T]], workers: int = 0) -> list[T]:
    """Each job's result, in order; `workers` processes at most (0: one per core; 1: here, serially)."""
    global _JOBS
    n = min(len(jobs), workers or cores())
    # Inside a worker (its jobs inherited) a map runs serially: the cores are taken already.
    if n <= 1 or _JOBS is not None or "fork" not in mp.get_all_start_methods():
        return [job() for job in jobs]
    _JOBS = jobs
    pool = ProcessPoolExecutor(n, mp_context=mp.get_context("fork"), initializer=_ignore_sigint)
    try:
        futures = [pool.submit(_run, i) for i in range(len(jobs))]
        out: list[T] = []
        for i, future in enumerate(futures):
            try:
                out.append(future.result())
            except BrokenProcessPool:  # a worker died (killed, out of memory): the job runs here
                out.append(jobs[i]())
        return out
    except BaseException:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()  # a worker inside HiGHS would not see a stop request until its solve ends
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _JOBS = None
