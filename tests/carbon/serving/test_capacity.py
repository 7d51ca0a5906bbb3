"""The planner's energy line of one replica: through the capacity point and about half its load."""
import numpy as np
import pytest

from bench.carbon import serving
from bench.carbon.inputs.workload import Workload
from bench.carbon.serving import capacity as cap_mod
from bench.carbon.serving.simulate import Slo


@pytest.mark.parametrize("n", [400, 2500])  # capacity above the trace's load, and half of it (whole strides)
def test_the_energy_line_passes_through_both_simulated_loads_and_never_below_idle(monkeypatch, n):
    rng = np.random.default_rng(0)
    w = Workload(np.sort(rng.uniform(0, 900, n)), rng.integers(50, 800, n), rng.integers(20, 300, n),
                 np.zeros(n, bool), "synthetic")
    model = serving.PRESETS["llama3_8b"]
    cand = cap_mod.Candidate("l4:32", "l4", serving.datasheet("l4"), 32)
    seen = []
    real = cap_mod.run_load

    def spy(w_, cost, max_batch, load, slo, abort, max_prefill_tokens=0):
        out = real(w_, cost, max_batch, load, slo, abort, max_prefill_tokens)
        seen.append((load, out))
        return out

    monkeypatch.setattr(cap_mod, "run_load", spy)
    c = cap_mod.capacity(cand, model, w, Slo())
    assert c.feasible and c.active_w >= cand.device.idle_w
    loads = {load: out for load, out in seen}
    full = max((load for load, (res, _) in loads.items() if res.attainment(Slo()) >= Slo().attainment
                and len(loads[load][1].arrival_s) / (loads[load][1].duration_s / 3600) == pytest.approx(c.requests_per_hour)))
    res, part = loads[full]
    energy_h = cap_mod.hourly_j(res, part, cand.device.idle_w)
    assert c.active_w * 3600 + c.dynamic_j_per_request * c.requests_per_hour == pytest.approx(energy_h, rel=1e-9)
    # A partly loaded replica draws more per request than at capacity: the line's no-load power is above idle.
    half = min((load for load in loads if load < full), key=lambda x: abs(np.log(x / (full / 2))))
    assert 0.35 < half / full < 0.7
    assert (full > 1) == (n == 400)  # both regimes of the loads tried (at 1/2 four steps down is 1/6)
    res_h, part_h = loads[half]
    rate_h = len(part_h.arrival_s) / (part_h.duration_s / 3600)
    predicted = c.active_w * 3600 + c.dynamic_j_per_request * rate_h
    assert c.active_w > cand.device.idle_w  # not clamped here, so the line passes the half-load point too
    assert predicted == pytest.approx(cap_mod.hourly_j(res_h, part_h, cand.device.idle_w), rel=1e-6)


def test_a_sparse_hour_has_a_capacity_not_a_refusal():
    # Ten requests over the hour, the first offline and the next 25 minutes on: the quarter-hour window
    # held that one request alone and a replica counted as overloaded at every load (it could not finish
    # a 1,000-token request within twice a one-request span), so no GPU was feasible. The window is the
    # whole hour here, and the longest request alone fits inside the horizon.
    arrivals = np.array([280.0, 1700, 1710, 2000, 2300, 2500, 2900, 3100, 3300, 3500])
    w = Workload(arrivals, np.full(10, 1000), np.full(10, 280), np.arange(10) == 0, "sparse")
    model = serving.PRESETS["llama3_8b"]
    cand = cap_mod.Candidate("l4:32", "l4", serving.datasheet("l4"), 32)
    c = cap_mod.capacity(cand, model, w, Slo())
    assert c.feasible and c.attainment == 1.0 and c.requests_per_hour >= 10
    # A slice of two requests a second apart, one long prompt and one long output: each alone takes
    # seconds to a minute and a half, far past twice their span. Neither counts as overload.
    cost = serving.StepCost.of(model, cand.device)
    two = Workload(np.array([0.0, 1.0]), np.array([8000, 10]), np.array([10, 2000]), np.zeros(2, bool), "two")
    res, _ = cap_mod.run_load(two, cost, 32, 1.0, Slo(ttft_s=60.0, tpot_s=1.0), abort=True)
    assert not res.aborted and np.isfinite(res.finish_s).all()
    assert cap_mod.solo_s(two, cost) >= float(np.max(res.finish_s - two.arrival_s)) > 2 * 1.0
