import math
import statistics

import pytest

from bench.measure.protocol import MeasurementError, Protocol, cv, measure_point, update_period_s
from bench.measure.meters.base import Meter, Reading


class FakeMachine:
    """A device whose time and energy advance only through the protocol's own calls: each kernel
    call takes `call_s` at a busy power, sleeping and clock reads draw idle power."""

    def __init__(self, idle_w=50.0, busy_w=(300.0,), call_s=0.01, tick_s=1e-5, slow_calls=0):
        self.idle_w, self.busy_w, self.call_s, self.tick_s = idle_w, list(busy_w), call_s, tick_s
        self.slow_calls = slow_calls  # the first calls take 3x as long, as while clocks ramp up
        self.now_s = 0.0
        self.energy_j = 0.0
        self.window = 0  # meter starts so far: the idle window is 1, trial k is k + 1
        self.calls = 0

    def _advance(self, seconds, power_w):
        self.now_s += seconds
        self.energy_j += seconds * power_w

    def clock(self):
        self._advance(self.tick_s, self.idle_w)
        return self.now_s

    def sleep(self, seconds):
        self._advance(seconds, self.idle_w)

    def fn(self):
        self.calls += 1
        power = self.busy_w[min(max(self.window - 2, 0), len(self.busy_w) - 1)]
        self._advance(self.call_s * (3 if self.calls <= self.slow_calls else 1), power)


class FakeMeter(Meter):
    domain, method = "fake", "fake_counter"

    def __init__(self, machine, period_s=0.02):
        self.m, self.period_s, self._t0, self._e0 = machine, period_s, None, None

    def is_available(self):
        return True

    def poll(self):
        return math.floor(self.m.now_s / self.period_s)  # the counter refreshes every period

    def start(self):
        self.m.window += 1
        self._t0, self._e0 = self.m.now_s, self.m.energy_j

    def stop(self):
        return Reading(self.m.energy_j - self._e0, self.m.now_s - self._t0, self.domain, self.method)


def run(machine, meter, **protocol):
    protocol = Protocol(**{"trials": 3, "min_window_s": 0.1, "warmup_s": 0.05, **protocol})
    return measure_point(machine.fn, [meter], protocol, clock=machine.clock, sleep=machine.sleep)


def test_update_period_is_measured_by_polling():
    machine = FakeMachine()
    period = update_period_s(FakeMeter(machine, period_s=0.02), machine.clock, samples=5, timeout_s=10)
    assert period == pytest.approx(0.02, abs=2e-5)


def test_meter_that_never_updates_is_an_error():
    machine = FakeMachine()
    meter = FakeMeter(machine)
    meter.poll = lambda: 0.0
    with pytest.raises(MeasurementError, match="changed 0 times"):
        update_period_s(meter, machine.clock, samples=5, timeout_s=0.01)


@pytest.mark.parametrize("min_window_s, period_s, expected_s", [(0.1, 0.02, 0.2), (0.5, 0.02, 0.5), (0.05, 0.1, 1.0)])
def test_window_lasts_max_of_min_window_and_ten_update_periods(min_window_s, period_s, expected_s):
    machine = FakeMachine()
    result = run(machine, FakeMeter(machine, period_s=period_s), min_window_s=min_window_s)
    assert result.window_s_target == pytest.approx(expected_s, rel=1e-3)
    assert min(result.trials_calls) * machine.call_s >= expected_s  # no window ends early
    assert result.window_s <= expected_s * 1.12  # nor runs much past its target
    assert result.domains[0].update_period_s == pytest.approx(period_s, rel=1e-2)


def test_idle_power_is_subtracted_for_dynamic_energy():
    machine = FakeMachine(idle_w=50.0, busy_w=(300.0,), call_s=0.01)
    result = run(machine, FakeMeter(machine))
    d = result.domains[0]
    assert d.idle_power_w == pytest.approx(50.0, rel=1e-6)
    assert d.energy_per_call_j == pytest.approx(300.0 * 0.01, rel=1e-3)
    assert d.dynamic_energy_per_call_j == pytest.approx(250.0 * 0.01, rel=1e-3)
    assert d.power_w == pytest.approx(300.0, rel=1e-3)
    assert result.time_per_call_s == pytest.approx(0.01, rel=2e-3)  # plus the fake clock's ticks


def test_median_and_cv_across_trials_after_discarding_the_first():
    machine = FakeMachine(busy_w=(900.0, 330.0, 270.0, 300.0))  # the first trial is discarded
    result = run(machine, FakeMeter(machine), trials=3)
    assert result.trials_discarded == 1
    d = result.domains[0]
    per_call = [3.3, 2.7, 3.0]
    assert list(d.trials_energy_per_call_j) == pytest.approx(per_call, rel=1e-3)
    assert d.energy_per_call_j == pytest.approx(3.0, rel=1e-3)
    assert d.energy_per_call_j_cv == pytest.approx(statistics.stdev(per_call) / 3.0, rel=1e-2)
    assert result.time_per_call_s_cv == pytest.approx(0.0, abs=1e-3)


def test_warmup_happens_before_any_window():
    machine = FakeMachine()
    meter = FakeMeter(machine)
    starts = []
    original = meter.start
    meter.start = lambda: (starts.append(machine.calls), original())[1]
    run(machine, meter, warmup_s=0.05)
    assert starts[0] >= 5  # 0.05 s of calls at 0.01 s each ran before the first window opened


def test_single_trial_has_no_cv():
    machine = FakeMachine()
    result = run(machine, FakeMeter(machine), trials=1)
    assert math.isnan(result.domains[0].energy_per_call_j_cv)
    assert math.isnan(cv([1.0]))


def test_window_edges_are_synchronised():
    machine = FakeMachine()
    events = []
    meter = FakeMeter(machine)
    start, stop = meter.start, meter.stop
    meter.start = lambda: (events.append("start"), start())[1]
    meter.stop = lambda: (events.append("stop"), stop())[1]
    protocol = Protocol(trials=2, min_window_s=0.1, warmup_s=0.0)
    measure_point(machine.fn, [meter], protocol, sync=lambda: events.append("sync"), clock=machine.clock, sleep=machine.sleep)
    for i, event in enumerate(events):
        if event == "start":
            assert events[i - 1] == "sync"
        if event == "stop":
            assert events[i - 1] in ("sync", "stop")


def test_windows_reach_their_target_when_calls_speed_up_after_calibration():
    machine = FakeMachine(call_s=0.01, slow_calls=6)  # calibration sees only slow calls
    result = run(machine, FakeMeter(machine, period_s=0.02), warmup_s=0.0, min_window_s=0.2)
    assert result.window_s_target == pytest.approx(0.2, rel=1e-3)
    assert all(t * n >= 0.2 for t, n in zip(result.trials_time_per_call_s, result.trials_calls))
    assert result.time_per_call_s == pytest.approx(0.01, rel=2e-3)  # plus the fake clock's ticks


def test_quality_is_ok_for_steady_windows_and_noisy_above_the_cv_threshold():
    steady = FakeMachine(busy_w=(300.0,))
    assert run(steady, FakeMeter(steady)).quality == "ok"
    noisy = FakeMachine(busy_w=(300.0, 330.0, 270.0, 300.0))
    assert run(noisy, FakeMeter(noisy), cv_threshold=0.02).quality == "noisy"
    tolerant = FakeMachine(busy_w=(300.0, 330.0, 270.0, 300.0))
    assert run(tolerant, FakeMeter(tolerant), cv_threshold=0.5).quality == "ok"


def test_trials_start_at_offsets_spread_over_one_update_period():
    machine = FakeMachine()
    sleeps = []
    sleep = machine.sleep
    machine.sleep = lambda s: (sleeps.append(s), sleep(s))[1]
    run(machine, FakeMeter(machine, period_s=0.02), trials=3, min_window_s=0.1)
    offsets = sleeps[1:]  # the first sleep is the idle window
    assert offsets == pytest.approx([0.0, 0.005, 0.010, 0.015], abs=1e-4)


def test_preheat_runs_until_power_is_steady():
    machine = FakeMachine(busy_w=(200.0, 260.0, 290.0, 300.0))  # power settles as the part warms
    result = run(machine, FakeMeter(machine), thermal="preheat", discard_first=False)
    assert result.preheat_s > 0
    assert list(result.domains[0].trials_energy_per_call_j) == pytest.approx([3.0] * 3, rel=1e-3)


def test_cooldown_waits_for_the_temperature():
    machine = FakeMachine()
    seen = []

    def temperature():
        seen.append(80.0 - machine.now_s * 10.0)  # cools by 10 C per second
        return seen[-1]

    result = measure_point(machine.fn, [FakeMeter(machine)], Protocol(trials=1, min_window_s=0.1, thermal="cooldown",
                           cooldown_temp_c=50.0, cooldown_s=60.0), clock=machine.clock, sleep=machine.sleep,
                           temperature_c=temperature)
    assert seen[0] > 50.0 and 47.5 <= seen[-1] <= 50.0  # stopped at the first look at or below 50 C
    assert result.cooldown_s > 2.0
