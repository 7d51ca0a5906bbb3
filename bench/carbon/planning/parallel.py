"""Independent plans solved side by side, a process per core.

The plans of a run (the carbon-optimal one, each baseline, each ablation step) share their
inputs and nothing else: each is MILP solves and whole-fleet simulations, serial Python and
HiGHS. Forked workers inherit the jobs (nothing is pickled but the plans coming back), ignore
Ctrl-C (the parent stops them and says so) and die with the parent; a worker that dies (killed,
out of memory) leaves its job and those after it to the parent, which may fail the same way.
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


_PARENT = 0  # the pid that started the running map
# Set once HiGHS has run in this process: HiGHS keeps a global pool of worker threads (on machines
# with more than two cores), and a child forked from it would hold that pool without its threads
# and could deadlock in its first solve. A map after it runs serially.
threads_started = False


def cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(float(quota) / float(period))))
    except (OSError, ValueError):
        pass
    return n


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:  # die with the parent (killed, timed out): a worker must never outlive it
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != _PARENT:  # the parent died before the line above
        os._exit(1)


def _run(i: int) -> object:
    assert _JOBS is not None
    return _JOBS[i]()


def run_all(jobs: list[Callable[[], T]], workers: int = 0) -> list[T]:
    """Each job's result, in order; `workers` processes at most (0: one per core; 1: here, serially)."""
    global _JOBS, _PARENT
    n = min(len(jobs), workers or cores())
    # Inside a worker (its jobs inherited) a map runs serially: the cores are taken already.
    if n <= 1 or _JOBS is not None or threads_started or "fork" not in mp.get_all_start_methods():
        return [job() for job in jobs]
    _JOBS, _PARENT = jobs, os.getpid()
    pool = None
    blocked = hasattr(signal, "pthread_sigmask")
    try:
        # Ctrl-C is held while the workers fork, so none can take it before it ignores it (held, it
        # is raised here once released, inside this try, so the workers are stopped).
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            pool = ProcessPoolExecutor(n, mp_context=mp.get_context("fork"), initializer=_init_worker)
            futures = [pool.submit(_run, i) for i in range(len(jobs))]
        finally:
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
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
        try:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            _JOBS = None  # even if a second Ctrl-C lands in the shutdown
