import dataclasses

import pytest

from bench.carbon.inputs import embodied, host_power


def test_codecarbon_dimm_model_and_cpu_load_curve():
    assert [host_power.dimm_count(gb) for gb in (2, 16, 32, 64, 128, 256, 2048, 100_000)] == [1, 2, 4, 4, 8, 8, 16, 32]
    assert host_power.dram_w(16) == pytest.approx(10.0)  # the 2-DIMM floor
    assert host_power.dram_w(128) == pytest.approx(5 * 4 + 4.5 * 4)
    assert host_power.dram_w(2048) == pytest.approx(5 * 4 + 4.5 * 4 + 4 * 8)
    assert host_power.cpu_w(300.0, 0.0) == pytest.approx(30.0)  # codecarbon's 10% floor
    assert host_power.cpu_w(300.0, 1.0) == pytest.approx(300.0)
    assert host_power.cpu_w(300.0, 0.5) == pytest.approx(300.0 * (0.1 + 0.9 * 0.125))


def test_host_power_from_codecarbon_tdp_and_refuses_an_unknown_part():
    ref = host_power.of(embodied.REFERENCE_HOST, 0.1)
    assert ref.cpu_w == pytest.approx(2 * 350.0 * (0.1 + 0.9 * 0.001))  # two Xeon 8480+, 350 W each
    assert "8480+" in ref.tdp_source and ref.method.startswith("model:")
    small = host_power.of(embodied.reduced_host(16e9, 40e9, 8), 0.1)
    assert small.total_w < ref.total_w
    with pytest.raises(ValueError, match="not in codecarbon"):
        host_power.of(dataclasses.replace(embodied.REFERENCE_HOST, cpu_model="Imaginary CPU 9000"), 0.1)
