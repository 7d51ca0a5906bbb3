import fcntl
import os
import tempfile

import pytest


def _collects(config) -> bool:
    """Whether this process collects and runs tests: a pytest-xdist worker or a run without workers,
    not the controller of a run with them (which only hands tests out: importing torch there cost
    every run ~3 s before its workers started)."""
    return hasattr(config, "workerinput") or not config.getoption("numprocesses", default=None)


def pytest_configure(config):
    if not _collects(config):
        return
    import torch

    # Without a GPU, Triton kernels run in its interpreter, which must be chosen before any kernel
    # module is imported (test modules import `kernels` after this hook).
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
    # Tests that compose configs with Hydra's `compose` compose as the entry does (bench.cli.main
    # installs this when imported, which a test module composing directly may not have done): the
    # ConfigStore shared, not deep-copied into every composition (a third of each one's time).
    from bench.cli import composing

    composing.install()


def _has(item, marker: str) -> bool:
    return item is not None and item.get_closest_marker(marker) is not None


def _order(items) -> None:
    """Realtime tests (below) first and together, in their collected order: a worker then runs them
    as one block under one hold of the lock, instead of waiting before each for whatever the other
    worker is running (up to a whole end-to-end test: ~100 s of waits in all when they were spread
    through the suite). Quiet tests (single-threaded, no subprocess: they leave a core free, so they
    run beside a realtime test) start the second half, which pytest-xdist's work-stealing scheduler
    sends to the second worker: it runs them while the first runs the realtime block, where it would
    otherwise wait (~25 s on a 2-core machine). With other worker counts the order is only less apt,
    but with 4 or more up to three quiet tests can run beside a realtime one, past what was tried.
    Long tests (a process of their own or a whole sweep, 4-20 s each) start the rest: the scheduler
    balances the workers by stealing from the end of each one's queue, so the queues end in short
    tests and the workers finish together (a long test last left one worker up to 10 s alone)."""
    realtime = [item for item in items if _has(item, "realtime")]
    quiet = [item for item in items if _has(item, "quiet") and not _has(item, "realtime")]
    rest = [item for item in items if not _has(item, "realtime") and not _has(item, "quiet")]
    rest.sort(key=lambda item: not _has(item, "long"))  # (stable: otherwise in collected order)
    first = max(0, len(items) // 2 - len(realtime))  # the first half after the realtime block
    items[:] = realtime + rest[:first] + quiet + rest[first:]


@pytest.hookimpl(trylast=True)  # after `-k`/`-m` deselect: the halves are of what runs
def pytest_collection_modifyitems(config, items):
    import torch

    _order(items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


_HELD: tuple | None = None  # (turnstile, lock) files while this worker holds the lock alone across tests


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """The suite runs in two pytest-xdist workers (`-n 2` in pyproject's addopts). Tests marked
    `realtime` poll an emulated GPU against the wall clock with 10 ms counter periods: a busy
    neighbour on a 2-core machine delays their polls and fails them (it did: HiGHS threads that
    outlived a solve). Each such test holds, through its whole protocol (setup of every fixture it
    needs, whatever its scope, the call and teardown), a lock the other worker's tests share in
    theirs, so nothing runs beside it but a quiet test (one thread: on 2 cores the realtime test
    has the other to itself; the realtime tests passed beside two busy single-threaded processes
    here); a run of realtime tests keeps it from the first to the last.
    Writer-preferring (a turnstile before the shared lock): a waiting realtime test is not starved
    by the other worker's stream of short tests."""
    global _HELD
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing runs beside any test
        yield
        return
    if _has(item, "quiet") and not _has(item, "realtime") and _HELD is None:  # (held only before a realtime test)
        yield
        return
    alone = _has(item, "realtime")
    if _HELD is None:
        base = os.path.join(tempfile.gettempdir(), f"bench-tests-{run}")
        turnstile, shared = open(base + ".turnstile", "a"), open(base + ".lock", "a")
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(shared, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
    else:  # held alone since an earlier realtime test of this run
        turnstile, shared = _HELD
    keep = alone and _has(nextitem, "realtime")
    try:
        yield
    finally:
        _HELD = (turnstile, shared) if keep else None
        if not keep:
            fcntl.flock(shared, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)
            turnstile.close()
            shared.close()
