"""Embodied carbon: amortisation by time share."""
import pytest

from bench.carbon.inputs import embodied


def test_amortisation_by_time_share():
    assert embodied.kg("gpu_h100_sxm") == 164
    assert embodied.amortised_kg(164, 24, 4) == pytest.approx(164 * 24 / (4 * 8760))
    host = embodied.REFERENCE_HOST
    assert host.kg() == pytest.approx(2 * 30 + 2048 * 0.29 + 22700 * 0.017 + 250 + 58)
    assert embodied.kg("dram", "low") < embodied.kg("dram") < embodied.kg("dram", "high")
    small = embodied.reduced_host(16e9, 8e9, 8)
    assert small.kg() < host.kg() and small.dram_gb >= 40
