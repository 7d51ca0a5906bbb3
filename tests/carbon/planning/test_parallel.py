"""Plans solved side by side: the same results, in order, as serially; errors reach the caller."""
import os

import pytest

from bench.carbon.planning import parallel
from bench.carbon.planning.errors import PlanError


@pytest.fixture(autouse=True)
def may_fork(monkeypatch):
    if parallel.threads_started:  # an earlier test solved a MILP in this process
        if (os.cpu_count() or 1) > 2:  # HiGHS sizes its threads by the machine's cores: no fork after it
            pytest.skip("HiGHS has run in this process on more than two cores; forking now could deadlock")
        monkeypatch.setattr(parallel, "threads_started", False)  # on two cores it starts no threads


def test_no_fork_once_highs_has_run_in_the_process(monkeypatch):
    monkeypatch.setattr(parallel, "threads_started", True)
    assert {pid for _, pid in parallel.run_all([lambda i=i: square(i) for i in range(3)], workers=2)} == {os.getpid()}


def square(i):
    return i * i, os.getpid()


def test_results_come_back_in_order_from_other_processes():
    out = parallel.run_all([lambda i=i: square(i) for i in range(5)], workers=2)
    assert [v for v, _ in out] == [0, 1, 4, 9, 16]
    assert {pid for _, pid in out} - {os.getpid()}  # forked workers ran them
    assert parallel.run_all([lambda i=i: square(i) for i in range(3)], workers=1) == [(i * i, os.getpid()) for i in range(3)]


def fails():
    raise PlanError("plan x: the MILP found no feasible plan")


def test_a_jobs_error_reaches_the_caller_as_itself():
    with pytest.raises(PlanError, match="no feasible plan"):
        parallel.run_all([lambda: 1, fails], workers=2)


def test_a_worker_that_dies_leaves_its_job_to_the_caller():
    parent = os.getpid()

    def dies_in_a_worker():
        if os.getpid() != parent:
            os._exit(9)  # killed (out of memory, a signal): no result comes back
        return "ran here"

    assert parallel.run_all([dies_in_a_worker, lambda: "other"], workers=2)[0] == "ran here"
