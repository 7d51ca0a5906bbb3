"""`python -m bench.fidelity` (a small grid, in-process) and the GPU-side checks."""
import pandas as pd
import pytest

from bench.fidelity import run as fidelity
from bench.fidelity.__main__ import main
from bench.fidelity.gpu import counter_period, report, three_shapes
from bench.fidelity.report import write
from tests.measure.emulated import fast, gpu


@pytest.mark.realtime  # wall-clock polling: runs with no other test beside it
def test_a_small_grid_writes_the_table_the_summary_and_the_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(fidelity, "Protocol", lambda: fast(min_window_s=0.05, lead_in_s=0.1))  # the emulation ramps 30 ms, lags 10
    grid = fidelity.Grid(call_s=(1e-3,), period_s=(0.01,), counter_modes=("exact",), protocols=("ours", "window"),
                         baseline_repeats=2, baseline_window_s=0.05)
    passed = []
    real_measure_point = fidelity.measure_point

    def measure_point(*args, **kw):  # as on a GPU: the device's `done` query goes with its marks
        passed.append(kw.get("done") is not None and kw.get("mark") is not None)
        return real_measure_point(*args, **kw)

    monkeypatch.setattr(fidelity, "measure_point", measure_point)
    rows = fidelity.run(grid)
    assert passed == [True]
    paths = write(rows, tmp_path, fidelity.settings(grid), {"python": "test"})
    frame = pd.read_csv(tmp_path / "fidelity.csv")
    assert list(frame.columns) == fidelity.COLUMNS and set(frame["protocol"]) == {"ours", "window"}
    ours = frame[frame["protocol"] == "ours"].iloc[0]
    assert ours["true_energy_per_call_j"] == pytest.approx(500.0 * 1e-3)  # busy power x call
    assert abs(ours["rel_error"]) < 0.01 and ours["cv"] < 0.01
    text = (tmp_path / "fidelity.md").read_text()
    assert "met every target at 1 of 1 points" in text and "window error %" in text
    assert [p.name for p in paths] == ["fidelity.csv", "fidelity.md", "fidelity.png"]


@pytest.mark.parametrize("args, says", [
    (["--out", "x", "--modes", "exact,nope"], "--modes"),
    (["--out", "x", "--call-s", "0,1"], "--call-s"),
    (["--out", "x", "--baseline-repeats", "0"], "--baseline-repeats"),
])
def test_bad_arguments_are_refused_before_any_work(args, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.realtime
def test_the_counter_period_is_polled_on_the_gpu():
    device, nvml, _ = gpu(period_s=0.01)
    period = counter_period(nvml, nvml.nvmlDeviceGetHandleByIndex(0), seconds=0.1)
    assert period["updates"] >= 5 and period["period_s_median"] == pytest.approx(0.01, rel=0.2)


def test_gpu_report_names_the_three_shapes_and_the_cross_check():  # (not realtime: tables only)
    points = pd.DataFrame({"kernel": ["a", "b", "c", "d"], "batch_size": [1, 2, 3, 4],
                           "time_per_call_s": [4e-3, 1e-5, 2e-4, 5e-2], "gpu_energy_per_call_j_cv": [0.001, 0.02, 0.003, 0.004],
                           "gpu_crosscheck_rel_diff": [0.01, -0.03, 0.02, None], "quality": ["ok"] * 4})
    assert list(three_shapes(points)["kernel"]) == ["b", "a", "d"]  # shortest, median, longest call
    text = report(points, {"updates": 20, "period_s_median": 0.1, "period_s_min": 0.099, "period_s_max": 0.101})
    assert "worst 2.00% (target 1%" in text and "missed" in text
    assert "over 3 points" in text and "period median 100.00 ms" in text
