"""The recorder thread and GPU telemetry over the NVML emulator."""
import math
import statistics
import time

import pytest

from bench.measure.monitor import GpuTelemetry, throttle_names
from bench.measure.recorder import Recorder
from tests.measure.emulated import PERIOD_S, fast, gpu, measure

pytestmark = pytest.mark.realtime  # wall-clock polling: runs with no other test beside it


def test_every_edge_is_bracketed_by_the_polls_around_it():
    device, nvml, meter = gpu()
    recorder = Recorder([meter], interval_s=0.001)
    recorder.start()
    time.sleep(0.08)
    recorder.close()
    edges = recorder.edges[0]
    assert len(edges) >= 4
    for e in edges:
        k = round((e.time_s - nvml.edge_s(0)) / PERIOD_S)
        assert e.before_s <= nvml.edge_s(k) <= e.after_s
    assert not recorder.faults


def test_slow_telemetry_calls_do_not_widen_the_counter_polls():
    # Five telemetry calls of 3 ms each every 10 ms (as NVML answered on the lent H200's VM):
    # polled in the counter's loop they would leave a gap of 15 ms or more in every cycle.
    device, nvml, meter = gpu(telemetry_call_s=0.003)
    recorder = Recorder([meter], GpuTelemetry(nvml, "h"), interval_s=0.001)
    recorder.start()
    time.sleep(0.3)
    recorder.close()
    gaps = recorder.poll_gaps_s()
    assert len(recorder.samples) >= 5 and len(gaps) > 50
    assert sum(g > 0.010 for g in gaps) < 0.05 * len(gaps)


def test_an_edge_is_known_to_half_a_poll_gap_plus_a_read():
    # Reads of 4 ms: the last poll before an edge starts a gap before the first after it, which
    # ends a read later, so an edge's error is about a whole gap, not half of one.
    device, nvml, meter = gpu(counter_call_s=0.004)
    recorder = Recorder([meter], interval_s=0.001)
    recorder.start()
    time.sleep(0.25)
    recorder.close()
    gap_s = statistics.median(recorder.poll_gaps_s())
    edges = recorder.edges[0]
    assert len(edges) >= 10 and gap_s >= 0.005
    assert recorder.edge_error_s() >= gap_s / 2 + 0.004 / 2
    assert statistics.median(e.error_s for e in edges) == pytest.approx(recorder.edge_error_s(), rel=0.2)


def test_a_meter_error_is_recorded_and_the_thread_goes_on():
    from bench.measure.emulator import Fault

    device, nvml, meter = gpu(faults=(Fault("nvmlDeviceGetTotalEnergyConsumption", at_s=0.0, calls=3),))
    recorder = Recorder([meter], interval_s=0.001)
    recorder.start()
    time.sleep(0.05)
    recorder.close()
    assert len(recorder.faults) == 3 and "NVMLError" in recorder.faults[0].message
    assert len(recorder.edges[0]) >= 2  # polling went on after the errors


def test_throttling_is_flagged_with_its_reasons():
    device, nvml, meter = gpu(reasons=0x20 | 0x1)  # thermal slowdown (and idle, which is not throttling)
    # The emulated device keeps real time, so on a loaded machine its trials can also vary by more
    # than the 2% that flags a point noisy (seen on CI): this test is about the throttle flag, so
    # the CV threshold is set where scheduling jitter cannot reach it.
    result = measure(device, [meter], fast(cv_threshold=0.5), telemetry=GpuTelemetry(nvml, "h"))
    assert result.quality == "throttled"
    assert result.telemetry["throttle_reasons"] == "sw_thermal_slowdown"
    assert result.telemetry["sm_mhz_mean"] == 1980
    assert throttle_names(0x1 | 0x2 | 0x100) == []


def test_running_at_the_power_limit_is_labelled_not_dropped():
    # sw_power_cap alone: the board ran at its limit (the steady state of a compute-bound kernel),
    # so the point stays usable and says so; with a thermal slowdown beside it, it is throttled.
    device, nvml, meter = gpu(reasons=0x4)
    result = measure(device, [meter], fast(cv_threshold=0.5), telemetry=GpuTelemetry(nvml, "h"))
    assert result.quality == "ok" and not result.throttled
    assert result.telemetry["power_capped"] and result.telemetry["throttle_reasons"] == "sw_power_cap"
    assert result.domains[0].power_limit_w == meter.max_power_w > 0
    device, nvml, meter = gpu(reasons=0x4 | 0x40)
    result = measure(device, [meter], fast(cv_threshold=0.5), telemetry=GpuTelemetry(nvml, "h"))
    assert result.quality == "throttled" and result.telemetry["throttle_reasons"] == "sw_power_cap+hw_thermal_slowdown"


def test_instant_power_cross_check_agrees_with_the_counter():
    device, nvml, meter = gpu()
    result = measure(device, [meter], telemetry=GpuTelemetry(nvml, "h"))
    d = result.domains[0]
    assert not math.isnan(d.crosscheck_energy_per_call_j)
    assert abs(d.crosscheck_rel_diff) < 0.05
    assert result.windows and all(w.samples > 3 for w in result.windows)
    assert GpuTelemetry(nvml, "h").power_method == "nvml_field_power_instant"
