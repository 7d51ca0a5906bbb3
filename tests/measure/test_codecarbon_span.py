"""codecarbon's offline tracker around a span of work: its figures come back labelled."""
import time

import pytest

pytest.importorskip("codecarbon")

from bench.measure.codecarbon_span import J_PER_KWH, codecarbon_span  # noqa: E402


# Not `realtime`: the span's figures are its wall time and codecarbon's model of CPU power over it,
# which a busy neighbour cannot push below what is asserted.
def test_codecarbon_span_reports_its_own_figures():
    with codecarbon_span("FRA", None) as out:
        assert out == {}  # filled when the span ends
        end = time.perf_counter() + 1.2
        while time.perf_counter() < end:
            pass
    assert out["codecarbon_country"] == "FRA"
    assert out["codecarbon_duration_s"] >= 1.0
    assert out["codecarbon_cpu_energy_j"] > 0 and out["codecarbon_gpu_energy_j"] == 0
    total = out["codecarbon_cpu_energy_j"] + out["codecarbon_gpu_energy_j"] + out["codecarbon_ram_energy_j"]
    assert out["codecarbon_energy_j"] == pytest.approx(total, rel=1e-6)
    assert out["codecarbon_emissions_g"] > 0 and J_PER_KWH == 3.6e6
