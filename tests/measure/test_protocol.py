"""The protocol against the NVML emulator, whose true energy per call is known exactly (real
time, 10 ms counter periods and short windows: each point takes well under a second)."""
import itertools
import math
import time

import pytest

from bench.measure.emulator import Fault
from bench.measure.meters.cpu_time_model import CorePower, CpuTimeModelMeter
from bench.measure.point import TIME_METHOD, TIME_METHOD_RATE, cv
from bench.measure.protocol import MeasurementError, Protocol, cool_down, measure_point
from bench.measure.windows import WindowRunner
from tests.fakes import FakeClock
from tests.measure.emulated import PERIOD_S, fast, gpu, measure, rel_error

pytestmark = pytest.mark.realtime  # wall-clock polling: runs with no other test beside it


@pytest.mark.parametrize("mode", ["exact", "sliced"])
def test_windows_on_update_edges_measure_the_true_energy(mode):
    # 80 ms windows over a 10 ms counter: read at arbitrary instants, quantisation alone would
    # be up to +-12% per window; between observed edges it vanishes.
    device, _, meter = gpu(call_s=1e-3, counter_mode=mode)
    result = measure(device, [meter])
    assert abs(rel_error(result, device)) < 0.01
    assert result.domains[0].energy_per_call_j_cv < 0.01
    assert result.domains[0].updates_per_window_min >= 2
    assert result.domains[0].idle_power_w == pytest.approx(60.0, rel=0.02)
    assert result.quality == "ok"


def late_host(device, late_s: float, at):
    """`device.wait`, returning `late_s` late at the waits `at(i)` picks (the host descheduled)."""
    seen = itertools.count()

    def wait(mark):
        device.wait(mark)
        if at(next(seen)):
            time.sleep(late_s)
    return wait


def test_a_host_late_to_see_chunks_finish_moves_neither_calls_nor_time():
    # Every third boundary is seen 2 ms late, less than the chunk queued ahead, so the device
    # never idles: the calls between edges and the time per call are the device's, not the
    # host's. Timed between boundaries and interpolated between those beside each edge, the
    # time per call was off by 0.8-1.0% here and the energy by up to 0.6%.
    device, _, meter = gpu(call_s=1e-3)
    result = measure(device, [meter], wait=late_host(device, 0.002, lambda i: i % 3 == 1))
    assert abs(rel_error(result, device)) < 0.01
    assert result.time_per_call_s == pytest.approx(1e-3, rel=3e-3)
    assert result.quality == "ok" and result.time_method == TIME_METHOD_RATE


def test_a_device_run_dry_by_a_late_host_is_redone_with_more_queued_ahead():
    # Seen 30 ms late once, inside the first window: longer than the chunk queued ahead, so the
    # device idles there and that window's energy per call would count the gap. The dry run is
    # seen (the mark already passed when the next chunk is queued), the window redone.
    device, _, meter = gpu(call_s=1e-3)
    result = measure(device, [meter], wait=late_host(device, 0.03, lambda i: i == 8))
    assert "starved" in result.rejections
    assert abs(rel_error(result, device)) < 0.01
    assert result.quality == "ok"


def test_a_device_that_stays_dry_is_flagged_starved():
    # Eager launches slower than the calls: no chunk length keeps the device busy.
    device, _, meter = gpu(call_s=5e-6, launch_s=8e-6)
    result = measure(device, [meter], fast(trials=1, max_retries=1), graph=False)
    assert "starved" in result.quality and "starved" in result.rejections
    assert result.time_method == TIME_METHOD  # dry windows: their time over their calls, said so


def test_short_calls_are_replayed_from_a_graph_not_timed_by_their_launches():
    # 5 us calls with 8 us eager launches: an eager loop measures the launch rate, gaps included.
    device, _, meter = gpu(call_s=5e-6, launch_s=8e-6)
    graphed = measure(device, [meter])
    assert graphed.launch.startswith("cuda_graph")
    assert abs(rel_error(graphed, device)) < 0.01
    assert graphed.time_per_call_s == pytest.approx(5e-6, rel=0.01)
    device, _, meter = gpu(call_s=5e-6, launch_s=8e-6)
    eager = measure(device, [meter], fast(trials=1), graph=False)
    assert eager.launch == "eager" and eager.time_per_call_s > 1.3 * 5e-6


def test_one_trial_is_single_trial_never_ok():
    device, _, meter = gpu()
    result = measure(device, [meter], fast(trials=1))
    assert result.quality == "single-trial"
    assert math.isnan(result.time_per_call_s_cv)


def inside_first_window(device, action):
    """`device.wait`, doing `action` at a chunk boundary inside the first busy window (a window has
    a dozen or more: 8 ms chunks over 100 ms), not at a fixed instant: a loaded host can stretch
    the run so that an instant falls between two windows, where no window sees what happens then
    (a counter reset or an NVML error at 0.35-0.4 s failed CI and a busy-core run, 2026-12-07)."""
    seen = itertools.count()

    def wait(mark):
        device.wait(mark)
        if next(seen) == 4:
            action()
    return wait


def test_an_nvml_error_mid_window_redoes_the_window():
    device, nvml, meter = gpu()
    error = Fault("nvmlDeviceGetTotalEnergyConsumption", at_s=0.0, calls=1)
    result = measure(device, [meter], wait=inside_first_window(device, lambda: nvml.faults.append(error)))
    assert any(r.startswith("fault") for r in result.rejections)
    assert result.quality == "ok" and abs(rel_error(result, device)) < 0.01


def test_an_nvml_error_that_persists_fails_the_point_with_one_line():
    device, nvml, meter = gpu(faults=(Fault("nvmlDeviceGetTotalEnergyConsumption", at_s=0.25, calls=10**9),))
    with pytest.raises(MeasurementError) as err:
        measure(device, [meter], fast(max_retries=1))
    assert "\n" not in str(err.value) and "NVMLError" in str(err.value)


def test_a_meter_failing_from_the_start_is_named_in_one_line_not_as_one_that_never_changed():
    # Failing throughout the idle phase, the meter was reported as "changed 0 times in 5 s"
    # after waiting out the deadline (the failed CI run of 2026-12-07, where a loaded host had
    # stretched the run to a fault meant for the windows).
    device, nvml, meter = gpu(faults=(Fault("nvmlDeviceGetTotalEnergyConsumption", at_s=0.0, calls=10**9),))
    started = time.monotonic()
    with pytest.raises(MeasurementError) as err:
        measure(device, [meter], fast(max_retries=1, period_timeout_s=10.0))
    message = str(err.value)
    assert "\n" not in message and "NVMLError" in message and "idle power" in message
    assert time.monotonic() - started < 5.0  # at the fault, not at the 10 s deadline (twice over)


def test_a_counter_reset_mid_run_is_detected_and_never_stored():
    device, nvml, meter = gpu()
    result = measure(device, [meter], wait=inside_first_window(device, nvml.reset_counter))
    assert any("backwards" in r for r in result.rejections)
    assert all(e > 0 for e in result.domains[0].trials_energy_per_call_j)
    assert abs(rel_error(result, device)) < 0.01


def test_power_above_the_device_limit_is_redone_then_flagged_implausible():
    device, nvml, meter = gpu(power_limit_w=150.0)  # busy power is 300 W
    result = measure(device, [meter], fast(max_retries=1))
    assert "implausible" in result.rejections  # redone first
    # On a loaded machine a window may also come out too short for its error target (redone and
    # lengthened), or the device run dry (redone with more queued ahead); that is the protocol
    # working, not this check.
    assert set(result.rejections) <= {"implausible", "imprecise", "too-few-updates", "starved"}
    assert "implausible" in result.quality  # then kept and flagged


def test_window_length_comes_from_the_target_error():
    device, _, meter = gpu()
    result = measure(device, [meter], fast(target_rel_error=0.01, min_window_s=0.01))
    # Half a poll gap at each end, twice for margin, over a 1% target: 0.1 s at the 0.5 ms asked
    # for, more where the idle phase saw the thread poll slower (its wait plus the read itself).
    assert 2 * 0.0005 / 0.01 <= result.window_s_target < 2 * 0.0015 / 0.01
    assert result.window_s >= result.window_s_target
    assert result.domains[0].rel_error_max <= 0.01


def test_windows_are_sized_from_the_poll_gaps_the_idle_phase_saw():
    # Counter reads of 4 ms (a slow driver, as on the lent H200's VM): the idle phase sees ~5 ms
    # between polls and reads of 4 ms, an edge known to ~4.5 ms, so windows start long enough for
    # a 5% target and none is redone. (Sized from the gap alone, 0.2 s, one in three was.)
    device, _, meter = gpu(counter_call_s=0.004)
    result = measure(device, [meter], fast(target_rel_error=0.05, cv_threshold=0.5))
    assert result.window_s_target >= 2 * 2 * (0.004 + 0.004) / 2 / 0.05
    assert result.windows_rejected == 0 and "imprecise" not in result.quality


def test_an_idle_power_taken_at_its_deadline_still_imprecise_is_flagged():
    # Reads of 4 ms (edges known to ~4.5 ms each: half of a ~5 ms gap plus a read) and a 5% target:
    # idle power needs about 0.18 s between its edges. Given 0.05 s it is taken at the deadline (the windows need it) and the
    # point says so; given its time (the test above) it is not flagged.
    device, _, meter = gpu(counter_call_s=0.004)
    result = measure(device, [meter], fast(target_rel_error=0.05, cv_threshold=0.5, period_timeout_s=0.05))
    assert "imprecise" in result.quality


def test_an_imprecise_window_grows_to_what_its_polls_need_and_later_windows_start_there():
    # Reads turn slow only once the kernel runs (a host loaded by the work): 80 ms windows sized
    # in a quick idle phase miss a 5% target, the retry grows to the span the window's own poll
    # gaps and reads need, and every later window starts at that length instead of being redone
    # too (before: each of the 3). Grown by the ratio it missed by, the retry missed again in
    # three of six tries beside a busy core.
    device, _, meter = gpu(counter_call_s=0.004, counter_call_after_s=0.25)
    result = measure(device, [meter], fast(target_rel_error=0.05, cv_threshold=0.5))
    assert 1 <= result.windows_rejected <= 2 and set(result.rejections) == {"imprecise"}
    # Grown to what ~5 ms gaps and 4 ms reads need (edges known to ~4.5 ms: 0.36 s with the margin),
    # not by the 80 ms window's miss ratio (~0.2 s).
    assert result.window_s >= 2 * 2 * (0.004 + 0.004) / 2 / 0.05
    assert "imprecise" not in result.quality and abs(rel_error(result, device)) < 0.05


def test_trials_start_at_phases_spread_over_the_update_period(monkeypatch):
    starts = []
    real_run = WindowRunner.run

    def run(self, step, lead_s, target_s, timeout_s):
        starts.append(self.clock())
        return real_run(self, step, lead_s, target_s, timeout_s)

    monkeypatch.setattr(WindowRunner, "run", run)
    device, nvml, meter = gpu()
    measure(device, [meter], fast(trials=4))
    phases = sorted(((t - nvml.edge_s(0)) % PERIOD_S) / PERIOD_S for t in starts)
    assert phases[-1] - phases[0] > 0.4  # spread, not all at one phase after an edge


def test_a_counter_that_stops_updating_is_an_error_before_any_window():
    device, _, meter = gpu()
    meter.poll = lambda: 5.0
    with pytest.raises(MeasurementError, match="changed 0 times"):
        measure(device, [meter], fast(period_timeout_s=0.1))


def test_measured_and_modelled_domains_stay_apart():
    from bench.measure.row import energy_columns

    device, _, meter = gpu()
    host = CpuTimeModelMeter(CorePower(4.0, "test"))
    result = measure(device, [meter, host])
    row = energy_columns(result, tokens=2)
    gpu_trials, cpu_trials = (d.trials_energy_per_call_j for d in result.domains)
    assert row["measured_domains"] == "gpu" and row["measured_method"] == "gpu=nvml_counter"
    assert row["measured_energy_per_call_j"] == pytest.approx(result.domains[0].energy_per_call_j)
    both = [g + c for g, c in zip(gpu_trials, cpu_trials)]
    assert row["energy_per_call_j_incl_model_cv"] == pytest.approx(cv(both))  # CV of the same per-trial sums
    assert row["energy_per_token_j_incl_model"] == pytest.approx(sum(both) / len(both) / 2)  # median of two
    assert "model:" in row["energy_incl_model_method"] and "model:" in row["host_energy_method"]
    assert "energy_per_call_j" not in row  # no unlabelled total of measured and modelled


def test_a_continuous_meter_alone_is_read_at_chunk_boundaries():
    meter = CpuTimeModelMeter(CorePower(4.0, "test"))

    def busy():
        x = 0
        for i in range(2000):
            x += i

    result = measure_point(busy, [meter], fast(), calibration_s=0.005)
    d = result.domains[0]
    assert d.idle_power_w < 1.0  # the idle phase sleeps: almost no CPU time
    assert 0 < d.power_w <= 4.0 * 1.05  # one busy thread at 4 W per core
    assert d.updates_per_window_min == 1 and d.rel_error_max == 0.0


def test_cv_is_of_the_absolute_mean():
    assert cv([-1.0, -1.1, -0.9]) == pytest.approx(cv([1.0, 1.1, 0.9]))
    assert cv([-1.0, -1.1, -0.9]) > 0
    assert math.isnan(cv([1.0]))


def test_cooldown_waits_for_the_temperature():
    clock = FakeClock()
    seen = []

    def temperature():
        seen.append(80.0 - clock.now_s * 10.0)  # cools by 10 C per second
        return seen[-1]

    waited = cool_down(Protocol(cooldown_temp_c=50.0, cooldown_s=60.0), clock, clock.advance, temperature)
    assert seen[0] > 50.0 and 47.5 <= seen[-1] <= 50.0  # stopped at the first look at or below 50 C
    assert waited == pytest.approx(3.0, abs=0.3)


def test_preheat_runs_windows_until_power_is_steady():
    device, _, meter = gpu()
    result = measure(device, [meter], fast(thermal="preheat", preheat_max_s=1.0))
    assert 0 < result.preheat_s < 1.5
