"""The NVML emulator itself: exact true energy, both counter modes, faults, utilisation samples (on a fake clock)."""
import math

import pytest

from bench.measure.emulator import EmulatedDevice, EmulatedNvml, Fault, PowerModel, PowerTimeline
from tests.fakes import FakeClock


def test_power_relaxes_towards_the_state_and_its_integral_is_exact():
    tau = 0.1
    line = PowerTimeline(PowerModel(idle_w=100.0, busy_w=300.0, ramp_s=tau), t0_s=0.0)
    line.switch(1.0, busy=True)
    assert line.power_w(1.0 + tau) == pytest.approx(300.0 - 200.0 * math.exp(-1))
    # 1 s idle (100 J), then 1 s relaxing towards 300 W: 300 J less the lag's 200 W x tau
    assert line.energy_j(2.0) == pytest.approx(100.0 + 300.0 - 200.0 * tau * (1 - math.exp(-10)))
    line.switch(2.0, busy=False)
    line.switch(2.05, busy=True)  # half a time constant down, then back up
    p_end = 100.0 + (line.power_w(2.0) - 100.0) * math.exp(-0.5)
    assert line.power_w(2.05) == pytest.approx(p_end)
    assert line.energy_j(2.05) - line.energy_j(2.0) == pytest.approx(
        100.0 * 0.05 + (line.power_w(2.0) - 100.0) * tau * (1 - math.exp(-0.5)))


def test_a_device_busy_part_of_the_time_settles_between_idle_and_busy_power():
    line = PowerTimeline(PowerModel(idle_w=100.0, busy_w=300.0, ramp_s=0.01), t0_s=0.0)
    t = 0.0
    for _ in range(20000):  # 40% busy in 5 us slots, for 0.1 s (ten time constants)
        line.switch(t, busy=True)
        line.switch(t + 2e-6, busy=False)
        t += 5e-6
    assert line.power_w(t) == pytest.approx(180.0, rel=0.01)


def emulated(mode: str, **kw):
    clock = FakeClock()
    device = EmulatedDevice(0.01, PowerModel(50.0, 250.0, 0.0), clock=clock, sleep=clock.advance)
    return clock, device, EmulatedNvml(device, period_s=0.1, counter_mode=mode, base_mj=0, **kw)


def test_exact_counter_publishes_true_energy_up_to_the_last_edge_minus_its_lag():
    clock, device, nvml = emulated("exact", lag_s=0.02)
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(0.05)
    device.replay(50)  # busy 0.5 s from t=0.05
    clock.advance(0.1)
    first = nvml.nvmlDeviceGetTotalEnergyConsumption(h)  # edge at 0.1: energy up to 0.08 s
    clock.advance(0.2)
    # The edge at 0.3 covers energy up to 0.28 s: 0.2 s busy more.
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(h) - first == pytest.approx(250.0 * 0.2 * 1000, abs=1)
    clock.advance(0.04)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(h) - first == pytest.approx(250.0 * 0.2 * 1000, abs=1)  # no edge yet
    assert device.energy_j(0.08) == pytest.approx(50.0 * 0.05 + 250.0 * 0.03)


def test_sliced_counter_is_exact_for_steady_power_and_blind_outside_its_slice():
    clock, device, nvml = emulated("sliced")
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(0.1)
    start = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    device.replay(10)  # busy from 0.1 to 0.2 s, then idle: steady over the whole period
    clock.advance(0.1)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(h) - start == pytest.approx(250.0 * 0.1 * 1000, abs=1)
    device.replay(5)  # busy 0.2-0.25 s: outside the sensed slice (0.275-0.3 s) of that period
    clock.advance(0.1)
    added = nvml.nvmlDeviceGetTotalEnergyConsumption(h) - start - 25_000
    assert added == pytest.approx(50.0 * 0.1 * 1000, abs=1)  # the counter saw idle only
    assert device.energy_j(0.3) - device.energy_j(0.2) == pytest.approx(250 * 0.05 + 50 * 0.05)


def test_faults_are_raised_on_schedule_and_a_reset_sends_the_counter_back():
    clock, device, nvml = emulated("exact", faults=(Fault("nvmlDeviceGetTotalEnergyConsumption", at_s=0.5, calls=2),),
                                   reset_at_s=1.0)
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(0.9)
    for _ in range(2):
        with pytest.raises(nvml.NVMLError):
            nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    high = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    clock.advance(0.2)
    # Past its time, the reset lands between two reads of one polling meter, not after a gap.
    after_gap = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    assert after_gap >= high
    clock.advance(0.001)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(h) < high
    assert nvml.nvmlDeviceGetEnforcedPowerLimit(h) == 700_000


def test_a_reset_asked_for_lands_on_the_next_read_and_the_counter_counts_on_from_zero():
    clock, device, nvml = emulated("exact")
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(0.35)
    before = nvml.nvmlDeviceGetTotalEnergyConsumption(h)
    nvml.reset_counter()
    clock.advance(0.2)  # long after the request: it still lands on the read that follows
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(h) == 0 < before
    clock.advance(0.2)  # two idle periods of 50 W: counted on from zero, not reset again
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(h) == pytest.approx(50.0 * 0.2 * 1000, abs=1)


def test_utilisation_samples_are_the_busy_share_of_each_period_ours_and_another_tenants():
    clock, device, nvml = emulated("exact", util_period_s=0.1, wall_start_s=1000.0)
    h = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(0.05)
    device.replay(10)  # ours from 0.05 to 0.15 s
    nvml.other_tenant_busy(0.12, 0.18)  # overlaps ours: the union counts
    nvml.other_tenant_busy(0.25, 0.3)
    clock.advance(0.26)
    value_type, samples = nvml.nvmlDeviceGetSamples(h, nvml.NVML_GPU_UTILIZATION_SAMPLES, 0)
    assert value_type == nvml.NVML_VALUE_TYPE_UNSIGNED_INT
    assert [(s.timeStamp, s.sampleValue.uiVal) for s in samples] == [(1_000_100_000, 50), (1_000_200_000, 80),
                                                                     (1_000_300_000, 50)]
    assert nvml.nvmlDeviceGetUtilizationRates(h).gpu == 50  # the latest sample
    _, newer = nvml.nvmlDeviceGetSamples(h, nvml.NVML_GPU_UTILIZATION_SAMPLES, 1_000_200_000)
    assert [s.timeStamp for s in newer] == [1_000_300_000]
    with pytest.raises(nvml.NVMLError_NotFound):
        nvml.nvmlDeviceGetSamples(h, nvml.NVML_GPU_UTILIZATION_SAMPLES, 1_000_300_000)
    assert nvml.wall_s() == pytest.approx(1000.31)


def test_a_gpu_without_utilisation_samples_says_not_supported():
    _, _, nvml = emulated("exact", samples_supported=False)
    with pytest.raises(nvml.NVMLError_NotSupported):
        nvml.nvmlDeviceGetSamples(nvml.nvmlDeviceGetHandleByIndex(0), nvml.NVML_GPU_UTILIZATION_SAMPLES, 0)
