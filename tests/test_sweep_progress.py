"""The sweep's progress line: resumed points are counted apart and kept out of the estimate."""
from __future__ import annotations

import datetime as dt

from hydra_plugins.bench_sweeper.validating_sweeper import Progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_resumed_points_do_not_shorten_the_estimate(capsys):
    clock = Clock()
    progress = Progress(10, clock=clock)
    old = {"created_utc": "2020-01-01T00:00:00+00:00"}
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
