import pytest

from bench.measure.meters.cpu_time_model import (
    CODECARBON_DEFAULT_W_PER_THREAD, CorePower, CpuTimeModelMeter, core_power, lookup_tdp, os_cores_per_socket, tdp_table,
)
from tests.fakes import FakeClock


@pytest.fixture(scope="module")
def table():
    return tdp_table()


def test_tdp_lookup_exact_contains_and_family(table):
    exact = lookup_tdp("AMD EPYC 9654 96-Core Processor", table)
    assert (exact.tdp_w, exact.how) == (360.0, "exact")
    intel = lookup_tdp("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", table)
    assert intel.tdp_w == 350.0
    family = lookup_tdp("AMD EPYC", table)
    assert family.how.startswith("family_median")
    assert lookup_tdp("Totally Unknown Chip", table) is None


def test_core_power_divides_tdp_by_cores_of_the_part(table):
    power = core_power("AMD EPYC 9654 96-Core Processor", table)
    assert power.w_per_core == pytest.approx(360.0 / 96)
    assert "codecarbon cpu_power.csv" in power.basis


def test_core_power_without_core_count_uses_codecarbon_default_and_says_so(table):
    power = core_power("AMD EPYC", table)
    assert power.w_per_core == CODECARBON_DEFAULT_W_PER_THREAD
    assert "default" in power.basis and "unknown" in power.basis


def test_given_tdp_and_cores_win(table):
    assert core_power("anything", table, tdp_w=120.0, cores=8).w_per_core == 15.0


def test_model_meter_is_cpu_time_times_core_power():
    clock = FakeClock()
    cpu = {"s": 10.0}
    meter = CpuTimeModelMeter(CorePower(5.0, "test"), cpu_time=lambda: cpu["s"], clock=clock)
    meter.start()
    cpu["s"] += 1.5  # 1.5 core-seconds
    clock.advance(1.0)
    reading = meter.stop()
    assert reading.energy_j == pytest.approx(7.5)
    assert reading.duration_s == pytest.approx(1.0)
    assert reading.method.startswith("model:") and reading.domain == "cpu"


def test_os_core_count_is_ignored_inside_a_vm(tmp_path):
    bare = tmp_path / "bare"
    bare.write_text("model name\t: X\ncpu cores\t: 32\nflags\t\t: fpu sse\n")
    vm = tmp_path / "vm"
    vm.write_text("model name\t: X\ncpu cores\t: 2\nflags\t\t: fpu hypervisor sse\n")
    assert os_cores_per_socket(bare) == 32
    assert os_cores_per_socket(vm) is None
