"""The busy check before a point: our own previous kernels are not another tenant's (emulated
GPU on a fake clock, so waits cost no time; the session's check on a real clock)."""
import pytest

from bench.measure.emulator import EmulatedDevice, EmulatedNvml, PowerModel
from bench.measure.meters import MeterSet
from bench.measure.monitor import gpu_activity, utilization_period_s
from bench.measure.protocol import MeasurementError
from bench.measure.session import check_gpu_idle
from tests.fakes import FakeClock, FakeNvml

pytestmark = pytest.mark.realtime  # wall-clock polling: runs with no other test beside it

WALL_START_S = 1.7e9  # the emulator's start on the wall clock


class Sleeps:
    """A sleep that advances the fake clock and remembers how long it was asked to wait."""

    def __init__(self, clock: FakeClock):
        self.clock, self.total_s = clock, 0.0

    def __call__(self, seconds: float) -> None:
        self.total_s += seconds
        self.clock.advance(seconds)


def after_own_work(util_period_s: float = 1 / 6, **nvml_kw):
    """Our kernels ran from 0.5 s to 0.8 s and the check starts as they end."""
    clock = FakeClock()
    device = EmulatedDevice(1e-3, PowerModel(), clock=clock, sleep=clock.advance)
    nvml = EmulatedNvml(device, util_period_s=util_period_s, wall_start_s=WALL_START_S, **nvml_kw)
    clock.advance(0.5)
    device.replay(300)
    clock.advance(0.3)
    return nvml, Sleeps(clock)


def check(nvml: EmulatedNvml, sleep: Sleeps, **kw):
    return gpu_activity(nvml, nvml.nvmlDeviceGetHandleByIndex(0), own_pid=1, own_idle_since_s=nvml.wall_s(),
                        clock=nvml.wall_s, sleep=sleep, **kw)


def test_own_kernels_just_before_the_check_do_not_make_the_gpu_busy():
    nvml, sleep = after_own_work()
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetUtilizationRates(h).gpu == 100  # what a bare utilisation read sees
    activity = check(nvml, sleep)
    assert not activity.busy and activity.utilization_pct_max == 0
    assert activity.method == "nvml_utilization_samples"
    # Three samples whose 1/6 s periods began after 0.8 s: the last at 4/3 s.
    assert sleep.total_s == pytest.approx(0.55)


def test_another_tenant_after_our_work_makes_the_gpu_busy():
    nvml, sleep = after_own_work()
    nvml.other_tenant_busy(0.9, 1.0)  # 60% of the period ending at 1.0 s
    activity = check(nvml, sleep)
    assert activity.busy and activity.utilization_pct_max == 60
    assert activity.method == "nvml_utilization_samples"


def test_a_gpu_sampling_once_a_second_is_judged_on_the_samples_the_deadline_allows():
    nvml, sleep = after_own_work(util_period_s=1.0)
    nvml.other_tenant_busy(1.5, 1.75)
    activity = check(nvml, sleep)
    assert activity.utilization_pct_max == 25 and activity.method == "nvml_utilization_samples"  # the sample at 2 s
    assert sleep.total_s == pytest.approx(1.5, abs=0.06)  # polled to the 1.5 s deadline


def test_without_samples_the_rate_is_read_once_the_longest_period_has_passed():
    nvml, sleep = after_own_work(samples_supported=False)
    activity = check(nvml, sleep, samples=3, interval_s=0.05)
    # 1 s after our work (0.8 s), then three reads 0.05 s apart: idle since 1 s after our work.
    assert sleep.total_s == pytest.approx(1.0 + 2 * 0.05)
    assert not activity.busy and activity.method == "nvml_utilization_rates_after_1s"


def test_a_pynvml_without_a_samples_call_falls_back_to_the_rate():
    clock = FakeClock()
    clock.advance(10.0)
    sleep = Sleeps(clock)
    activity = gpu_activity(FakeNvml(clock, utilization_pct=5), "h", own_pid=1, own_idle_since_s=9.9, samples=2,
                            interval_s=0.05, clock=clock, sleep=sleep)
    assert sleep.total_s == pytest.approx(0.9 + 0.05)
    assert activity.busy and activity.method == "nvml_utilization_rates_after_1s"


def test_the_sample_period_is_the_median_spacing_at_most_one_second():
    assert utilization_period_s([0, 166_667, 333_333, 333_333, 500_000]) == pytest.approx(1 / 6, rel=1e-5)
    assert utilization_period_s([0, 2_000_000]) == 1.0
    assert utilization_period_s([5]) == 1.0


def emulated_meters(util_period_s: float = 0.01):
    device = EmulatedDevice(1e-3, PowerModel())
    nvml = EmulatedNvml(device, util_period_s=util_period_s)
    return device, MeterSet([], nvml=nvml, gpu_handle=nvml.nvmlDeviceGetHandleByIndex(0))


def test_the_session_check_waits_for_our_queued_work_and_leaves_it_out():
    device, meters = emulated_meters()
    device.replay(50)  # 50 ms of our work still queued when the check starts
    extra = check_gpu_idle(meters, "error", device.sync)
    assert extra["gpu_busy"] is False and extra["gpu_busy_method"] == "nvml_utilization_samples"
    device.replay(50)
    with pytest.raises(MeasurementError, match="busy_check=error"):  # unsynchronised, our work looks foreign
        check_gpu_idle(meters, "error", lambda: None)
