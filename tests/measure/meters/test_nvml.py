import pytest

from bench.measure.meters.base import MeterUnavailable
from bench.measure.meters import gpu_meter
from bench.measure.meters.nvml import integrate_trapezoid, open_gpu
from bench.measure.meters.nvml_counter import NvmlEnergyMeter
from bench.measure.meters.nvml_power import NvmlPowerMeter
from tests.fakes import FakeClock, FakeNvml


def test_counter_meter_converts_millijoules_once():
    clock = FakeClock()
    nvml = FakeNvml(clock, power_w=lambda t: 250.0, update_period_s=0.01)
    meter = NvmlEnergyMeter(nvml, ("index", 0), clock=clock)
    assert meter.is_available()
    clock.advance(1.0)
    meter.start()
    clock.advance(2.0)
    reading = meter.stop()
    assert reading.method == "nvml_counter" and reading.domain == "gpu"
    assert reading.duration_s == pytest.approx(2.0)
    assert reading.energy_j == pytest.approx(500.0, rel=1e-3)  # 250 W x 2 s, not 500,000
    assert reading.power_w == pytest.approx(250.0, rel=1e-3)


def test_counter_meter_stop_before_start_is_an_error():
    nvml = FakeNvml(FakeClock())
    with pytest.raises(RuntimeError):
        NvmlEnergyMeter(nvml, None).stop()


def test_gpu_without_counter_falls_back_to_labelled_power_integration():
    clock = FakeClock()
    meter = gpu_meter(FakeNvml(clock, has_counter=False), ("index", 0))
    assert isinstance(meter, NvmlPowerMeter)
    assert meter.method == "nvml_power_integration"


def test_gpu_with_neither_counter_nor_power_is_unavailable():
    with pytest.raises(MeterUnavailable):
        gpu_meter(FakeNvml(FakeClock(), has_counter=False, has_power=False), None)


def test_power_integration_is_trapezoidal():
    ramp = [(0.5 * i, 100.0 + 25.0 * i) for i in range(5)]  # 100 W + 50 W/s over 2 s: exact
    assert integrate_trapezoid(ramp) == pytest.approx(100.0 * 2.0 + 25.0 * 2.0**2)
    assert integrate_trapezoid(ramp[:1]) == 0.0


def test_power_meter_thread_starts_and_stops():
    clock = FakeClock()
    meter = NvmlPowerMeter(FakeNvml(clock, power_w=lambda t: 80.0), None, interval_s=0.001, clock=clock)
    meter.start()
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.energy_j == pytest.approx(80.0 * reading.duration_s)
    assert reading.duration_s == pytest.approx(1.0)


def test_open_gpu_prefers_uuid_and_falls_back_to_index():
    nvml = FakeNvml(FakeClock(), uuids=("GPU-bbbb",))
    assert open_gpu(nvml, 3, "GPU-bbbb") == ("uuid", "GPU-bbbb")
    assert open_gpu(nvml, 3, "GPU-zzzz") == ("index", 3)
    assert nvml.initialised
