"""The trace hour by hour, replayed only when shorter than the period, tiled when under an hour;
requests routed over a fleet by the stated policy."""
import numpy as np
import pytest

from bench.carbon.inputs.workload import Workload
from bench.carbon.planning.demand import Demand
from bench.carbon.planning.verify import route


def diurnal(hours: int, seed: int = 0) -> Workload:
    """A multi-hour trace whose rate follows a day: 50 requests an hour at night, 450 at noon."""
    rng = np.random.default_rng(seed)
    times = []
    for h in range(hours):
        rate = 250 - 200 * np.cos(2 * np.pi * h / 24)
        times.append(h * 3600 + np.sort(rng.uniform(0, 3600, int(rate))))
    t = np.concatenate(times)
    n = len(t)
    return Workload(t, rng.integers(10, 4000, n), rng.integers(1, 500, n), rng.random(n) < 0.3, "diurnal")


def test_a_trace_as_long_as_the_period_is_used_hour_by_hour():
    w = diurnal(48)
    d = Demand.of(w, 24)
    online, offline = d.counts()
    assert not d.replayed and d.trace_hours == 48
    hour_of = ((w.arrival_s - w.arrival_s[0]) // 3600).astype(int)  # hours from the first request
    assert online.tolist() == [int(((hour_of == h) & ~w.offline).sum()) for h in range(24)]
    assert offline.tolist() == [int(((hour_of == h) & w.offline).sum()) for h in range(24)]
    assert online.max() > 5 * online.min()  # the day shows, not one hour's load replayed
    assert d.busiest_hour().arrival_s.max() < 3600 and len(d.busiest_hour().arrival_s) == (online + offline).max()


def test_a_shorter_trace_is_replayed_and_one_under_an_hour_tiled():
    d = Demand.of(diurnal(3), 10)
    online, _ = d.counts()
    assert d.replayed and online[3] == online[0] and online[7] == online[1]
    ten_minutes = Workload(np.arange(100) * 6.0, np.full(100, 50), np.full(100, 10), np.zeros(100, bool), "short")
    t = Demand.of(ten_minutes, 2)
    assert t.tiled == 6 and t.counts()[0].tolist() == [600, 600]  # 100 requests per 600 s: 600 an hour
    one = Demand.of(Workload(np.zeros(1), np.ones(1, int), np.ones(1, int), np.zeros(1, bool), "one"), 3)
    assert one.counts()[0].tolist() == [1, 1, 1] and one.tiled == 1


def test_round_robin_follows_the_planned_shares_and_least_loaded_the_capacity():
    w = Workload(np.linspace(0, 3599, 900), np.full(900, 100), np.full(900, 10), np.zeros(900, bool), "even")
    # Candidate 0 planned 600 requests on one replica, candidate 1 300 on each of two... shares 2:1:1
    where = route(w, [(0, 600.0, 1000.0), (1, 300.0, 1000.0), (1, 300.0, 1000.0)], "round_robin")
    assert np.bincount(where).tolist() == [450, 225, 225]
    # Smooth weighted round robin, request by request: the most credit first, ties to the first replica
    # (spelt out here with numpy, as the planner once ran it), whatever the shares, zeros included.
    rng = np.random.default_rng(0)
    for _ in range(40):
        shares = rng.choice([0.0, 1.0, 2.5, 300.0, 71.3], int(rng.integers(1, 7)))
        n = int(rng.integers(0, 500))
        share = shares / shares.sum() if shares.sum() > 0 else np.full(len(shares), 1.0 / len(shares))
        credit, expected = np.zeros(len(shares)), []
        for _ in range(n):
            credit += share
            expected.append(int(np.argmax(credit)))
            credit[expected[-1]] -= 1.0
        w_n = Workload(np.arange(n, dtype=float), np.ones(n, int), np.ones(n, int), np.zeros(n, bool), "n")
        got = route(w_n, [(0, float(x), 1.0) for x in shares], "round_robin")
        assert got.tolist() == expected
        got[:] = -1  # each hour gets its own copy of the memoised order
        assert route(w_n, [(0, float(x), 1.0) for x in shares], "round_robin").tolist() == expected
    # Least loaded: at a light load the faster replica finishes each request sooner and takes all;
    # near the fleet's capacity the slower one takes the overflow, about a fifth.
    assert np.bincount(route(w, [(0, 0.0, 4000.0), (1, 0.0, 1000.0)], "least_loaded"), minlength=2).tolist() == [900, 0]
    busy = Workload(np.linspace(0, 3599, 4800), np.full(4800, 100), np.full(4800, 10), np.zeros(4800, bool), "busy")
    share = np.bincount(route(busy, [(0, 0.0, 4000.0), (1, 0.0, 1000.0)], "least_loaded")) / 4800
    assert share[1] == pytest.approx(0.2, abs=0.05)
    with pytest.raises(ValueError, match="plan.routing='random'"):
        route(w, [(0, 1.0, 1.0)], "random")


def test_an_hour_and_a_few_seconds_is_one_hour_and_one_instant_is_one_burst():
    n = 2000
    exact = Workload(np.linspace(0, 3600, n), np.full(n, 50), np.full(n, 10), np.zeros(n, bool), "3600 s")
    d = Demand.of(exact, 4)
    assert d.trace_hours == 1 and d.counts()[0].tolist() == [n] * 4  # not [n - 1, 1, n - 1, 1]
    longer = Workload(np.linspace(0, 3700, n), np.full(n, 50), np.full(n, 10), np.zeros(n, bool), "3700 s")
    assert Demand.of(longer, 2).counts()[0].tolist() == [n, n]
    burst = Workload(np.zeros(50), np.full(50, 50), np.full(50, 10), np.zeros(50, bool), "burst")
    b = Demand.of(burst, 3)
    assert b.tiled == 1 and b.counts()[0].tolist() == [50, 50, 50]
