"""The sweep's progress line: resumed points are counted apart and kept out of the estimate."""
from __future__ import annotations

import datetime as dt

from bench.measure.results import StoredRow
from hydra_plugins.bench_sweeper.validating_sweeper import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_resumed_points_do_not_shorten_the_estimate(capsys):
    clock = Clock()
    progress = Progress(10, clock=clock)
    old = StoredRow({"created_utc": "2020-01-01T00:00:00+00:00"})
    for _ in range(4):  # resumed: stored rows from an earlier run, each back in 50 ms
        clock.t += 0.05
        progress.finished([old])
    clock.t += 6.0  # a point measured now: 6 s
    line = progress.finished([{"created_utc": dt.datetime.now(dt.timezone.utc).isoformat()}])
    assert "5/10 points (50%)" in line and "4 from an earlier run" in line
    assert "~0:00:30 left" in line  # 5 points to go at 6 s each, not 5 x 1.2 s
    assert capsys.readouterr().err.splitlines()[-1] == line


def test_a_plain_sweep_estimates_from_every_point():
    clock = Clock()
    progress = Progress(3, clock=clock)
    clock.t = 2.0
    assert progress.finished([{"created_utc": dt.datetime.now(dt.timezone.utc).isoformat()}]).endswith("~0:00:04 left")
    clock.t = 4.0
    assert "earlier" not in progress.finished([None])  # a task that returns no row (another launcher)
    clock.t = 6.0
    assert progress.finished([{}]).endswith("0:00:06 elapsed")  # done: no estimate


def test_sweep_grids_are_concatenated_in_a_seeded_random_order():
    from hydra_plugins.bench_sweeper.validating_sweeper import ValidatingSweeper

    grids = [{"kernel": "prefill.torch", "batch_size": "1,2", "seq_len": "64,128"},
             {"kernel": "decode.torch", "batch_size": "1,2,4"},
             {"kernel": "decode.torch", "batch_size": "4"}]  # overlaps the second grid

    def jobs(order, seed=0, args=("context_len=99",)):
        return ValidatingSweeper(None, None, grids=grids, order=order, seed=seed).jobs(list(args))

    in_grid_order = jobs("grid")
    assert len(in_grid_order) == 4 + 3  # no prefill x decode cross terms, the overlap measured once
    assert in_grid_order[0] == ["kernel=prefill.torch", "batch_size=1", "seq_len=64", "context_len=99"]
    assert all("context_len=99" in job for job in in_grid_order)  # command-line values reach every grid
    shuffled = jobs("random", seed=3)
    assert sorted(shuffled) == sorted(in_grid_order) and shuffled != in_grid_order
    assert jobs("random", seed=3) == shuffled and jobs("random", seed=4) != shuffled
    assert len(jobs("grid", args=("batch_size=8",))) == 2 + 1  # a command-line value replaces a swept one
    # A preset's grids are measurement points: fit, report and plan run once, or over what the
    # command line sweeps.
    sweeper = ValidatingSweeper(None, {"kernel": "prefill.torch,decode.torch"}, grids=grids, order="random")
    assert sweeper.jobs(["results_dir=x"], task="plan") == [["results_dir=x"]]
    assert sweeper.jobs(["grid=ciso_2022,pjm_2022"], task="plan") == [["grid=ciso_2022"], ["grid=pjm_2022"]]
