import os
import stat
from pathlib import Path

import pytest

from bench.measure.meters import MeterConf, select_meters
from bench.measure.meters.cpu_time_model import CpuTimeModelMeter
from bench.measure.meters.rapl import RaplMeter, discover
from tests.fakes import FakeClock

MAX_UJ = 262_143_328_850


def zone(folder: Path, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    folder.mkdir(parents=True)
    (folder / "name").write_text(name + "\n")
    (folder / "energy_uj").write_text(f"{energy_uj}\n")
    (folder / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return folder


def set_uj(folder: Path, energy_uj: int) -> None:
    (folder / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def two_socket_tree(tmp_path):
    """Like /sys/devices/virtual/powercap: nested zones, listed flat by symlinks in the class
    folder, plus a psys zone and an mmio duplicate that must not be counted."""
    devices = tmp_path / "devices" / "intel-rapl"
    p0 = zone(devices / "intel-rapl:0", "package-0", 1_000_000)
    core0 = zone(p0 / "intel-rapl:0:0", "core", 400_000)
    dram0 = zone(p0 / "intel-rapl:0:1", "dram", 50_000)
    p1 = zone(devices / "intel-rapl:1", "package-1", 2_000_000)
    dram1 = zone(p1 / "intel-rapl:1:0", "dram", 60_000)
    psys = zone(devices / "intel-rapl:2", "psys", 9_000_000)
    cls = tmp_path / "class"
    cls.mkdir()
    for z in (p0, core0, dram0, p1, dram1, psys):
        (cls / z.name).symlink_to(z)
    zone(cls / "intel-rapl-mmio:0", "package-0", 1_000_000)
    return cls, {"p0": p0, "core0": core0, "dram0": dram0, "p1": p1, "dram1": dram1, "psys": psys}


def test_discovers_packages_and_dram_once_without_nested_or_platform_zones(two_socket_tree):
    root, _ = two_socket_tree
    packages, problems = discover(root, "package")
    assert [z.name for z in packages] == ["package-0", "package-1"] and not problems
    dram, _ = discover(root, "dram")
    assert sorted(z.name for z in dram) == ["dram", "dram"]


def test_energy_sums_sockets_and_ignores_core_and_psys(two_socket_tree):
    root, z = two_socket_tree
    pkg, dram = RaplMeter("package", root), RaplMeter("dram", root)
    assert pkg.is_available() and dram.is_available()
    pkg.start()
    dram.start()
    set_uj(z["p0"], 3_000_000)       # +2 J
    set_uj(z["p1"], 2_500_000)       # +0.5 J
    set_uj(z["core0"], 99_000_000)   # inside package-0: must not be added
    set_uj(z["psys"], 99_000_000)    # whole platform: must not be added
    set_uj(z["dram0"], 150_000)      # +0.1 J
    set_uj(z["dram1"], 260_000)      # +0.2 J
    p, d = pkg.stop(), dram.stop()
    assert (p.domain, p.method) == ("cpu_package", "rapl")
    assert p.energy_j == pytest.approx(2.5)
    assert (d.domain, d.energy_j) == ("dram", pytest.approx(0.3))


def test_counter_wrap_around_uses_max_energy_range(tmp_path):
    z = zone(tmp_path / "intel-rapl:0", "package-0", 1_000_000 - 300, max_uj=1_000_000)
    # A fake clock: a 1 J range at the 1 kW ceiling hides a wrap in 1 ms, which a loaded
    # machine can take between two reads (then the meter rightly refuses the window).
    clock = FakeClock()
    meter = RaplMeter("package", tmp_path, clock=clock)
    meter.start()
    set_uj(z, 700)  # wrapped: 300 uJ to the top, then 700 past zero
    clock.advance(0.0005)
    assert meter.stop().energy_j == pytest.approx(1000e-6)


def test_amd_layout_package_with_core_subzones(tmp_path):
    p = zone(tmp_path / "intel-rapl:0", "package-0", 10)
    zone(p / "intel-rapl:0:0", "core", 10)
    meter = RaplMeter("package", tmp_path)
    assert [z.name for z in meter.zones] == ["package-0"]
    assert not RaplMeter("dram", tmp_path).is_available()


@pytest.fixture
def unreadable(monkeypatch):
    """Make files without read permission unreadable even for root, as the kernel does for
    non-root users since Linux 5.10."""
    real = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.exists() and not os.stat(self).st_mode & stat.S_IRUSR:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


def test_unreadable_counter_makes_rapl_unavailable_with_reason(tmp_path, unreadable):
    z = zone(tmp_path / "intel-rapl:0", "package-0", 10)
    (z / "energy_uj").chmod(0)
    meter = RaplMeter("package", tmp_path)
    assert not meter.is_available()
    assert "not readable" in meter.why_unavailable()


def test_auto_host_meter_falls_back_to_labelled_model_without_rapl(tmp_path, unreadable):
    z = zone(tmp_path / "intel-rapl:0", "package-0", 10)
    (z / "energy_uj").chmod(0)
    import torch

    chosen = select_meters(torch.device("cpu"), MeterConf(host="auto", powercap_root=str(tmp_path), cpu_tdp_w=100.0, cpu_cores=10))
    assert [type(m) for m in chosen.meters] == [CpuTimeModelMeter]
    assert chosen.meters[0].method.startswith("model:")
    assert any("RAPL unavailable" in note for note in chosen.notes)


def test_auto_host_meter_uses_rapl_where_readable(two_socket_tree):
    import torch

    root, _ = two_socket_tree
    chosen = select_meters(torch.device("cpu"), MeterConf(host="auto", powercap_root=str(root)))
    assert [m.domain for m in chosen.meters] == ["cpu_package", "dram"]


def test_missing_powercap_is_reported(tmp_path):
    meter = RaplMeter("package", tmp_path / "absent")
    assert not meter.is_available() and "does not exist" in meter.why_unavailable()


def test_wraps_between_polls_are_unfolded_into_a_running_total(tmp_path):
    # A 1 J counter polled twice per wrap: each poll's value is below the last one at times,
    # yet the running total counts every joule (the protocol takes energy between two polls).
    z = zone(tmp_path / "intel-rapl:0", "package-0", 0, max_uj=1_000_000)
    (z / "constraint_0_power_limit_uw").write_text("100000000\n")  # 100 W: at most 200 W counted
    clock = FakeClock()
    meter = RaplMeter("package", tmp_path, clock=clock)
    assert meter.poll() == 0.0
    for step in range(1, 8):  # +0.6 J every 4 ms (150 W): wraps at steps 2, 4, 5, 7
        clock.now_s += 0.004
        set_uj(z, (600_000 * step) % 1_000_000)
        assert meter.poll() == pytest.approx(0.6 * step)


def test_a_gap_that_could_hide_another_wrap_is_a_fault_not_a_guess(tmp_path):
    from bench.measure.meters.base import MeterFault

    z = zone(tmp_path / "intel-rapl:0", "package-0", 0, max_uj=1_000_000)
    (z / "constraint_0_power_limit_uw").write_text("100000000\n")  # 100 W, so up to 200 W
    clock = FakeClock()
    meter = RaplMeter("package", tmp_path, clock=clock)
    meter.start()
    clock.now_s = 0.01  # 2 J possible in 10 ms: the 0.3 J seen may be 1.3 J or 2.3 J
    set_uj(z, 300_000)
    with pytest.raises(MeterFault, match="could hold 2 wraps"):
        meter.stop()
    clock.now_s = 0.012  # counting resumes from the faulty read: the gap is lost, what follows is whole
    set_uj(z, 400_000)
    assert meter.poll() == pytest.approx(0.1)


def test_an_io_error_reading_the_counter_is_a_fault(tmp_path, monkeypatch):
    from bench.measure.meters import rapl
    from bench.measure.meters.base import MeterFault

    zone(tmp_path / "intel-rapl:0", "package-0", 5)
    meter = RaplMeter("package", tmp_path)
    meter.poll()

    def eio(self):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(rapl.Zone, "read_uj", eio)
    with pytest.raises(MeterFault, match="Input/output error"):
        meter.poll()
