"""`python -m bench` end to end on the CPU, as separate processes: the main job (killed, resumed and
finished), and kills at any moment (imports included). Everything that does not need a process of its own (bad input,
refusals, other tasks, resume after a lost point) is tested in-process in `tests/cli`."""
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.long  # each starts `python -m bench` (tests/conftest.py)


def point_files(results: Path) -> list[Path]:
    return sorted((results / "points").glob("*.json")) if (results / "points").is_dir() else []


# The main job as the README's first command runs it (its default sweep, kernels, meters, fit, report
# and carbon estimate), with the protocol's windows shortened to keep the suite within its budget:
# the embedded defaults themselves are checked to compose and validate in tests/cli/test_conf.py,
# and windows of every length, trial counts and the discarded first trial are the protocol's own tests
# (tests/measure).
FAST_WINDOWS = ("measure.min_window_s=0.05", "measure.warmup_s=0.01", "measure.lead_in_s=0.02", "measure.trials=2",
                "measure.discard_first=false")


def test_the_main_job_killed_mid_way_twice_resumes_without_loss_or_duplicates_and_reports(tmp_path):
    # The README's main job (its default sweep of prefill and decode, kernels, meters, fit, report
    # and carbon estimate) as separate processes: each kill lands within 50 ms of a new point's
    # file, while the next point runs. Ctrl-C stops the first run, SIGKILL the second (which resumed
    # the first), and the same command again finishes the sweep, reports every point and exits 0 (a
    # process of its own: a thread or pool that kept it from exiting would show). One sweep for both
    # checks: a whole main job of its own cost the suite ~20 s more.
    import signal
    import time

    args = [f"results_dir={tmp_path}", *FAST_WINDOWS]
    measured: dict[str, str] = {}
    for sig in (signal.SIGINT, signal.SIGKILL):
        proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while len(point_files(tmp_path)) <= len(measured) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is not None:  # it ended on its own: say how
            raise AssertionError(f"the run ended (exit {proc.returncode}) before it could be killed ({sig.name}): "
                                 f"{proc.communicate()[1][-2000:]}")
        assert len(point_files(tmp_path)) > len(measured), f"no new point before the deadline ({sig.name})"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        if sig == signal.SIGINT:  # Ctrl-C is a clean stop that says how to resume, not a traceback
            assert proc.returncode == 130, err
            assert "Rerun the same command" in err and "Traceback" not in err
        now = {p.name: p.read_text() for p in point_files(tmp_path)}
        assert all(now[name] == text for name, text in measured.items())  # kept, not redone
        measured = now
    assert 2 <= len(measured) < 8  # each run killed part way
    out = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert all(measured[name] == (tmp_path / "points" / name).read_text() for name in measured)  # kept, not redone
    table = pd.read_csv(tmp_path / "points.csv")
    assert set(table["phase"]) == {"prefill", "decode"} and len(table) == 8 and table["key"].is_unique
    assert len(point_files(tmp_path)) == 8
    assert (table["energy_per_token_j_incl_model"] > 0).all()
    assert "mJ/token" in out.stdout
    # The closing carbon estimate names each point fully (two points never share a label).
    assert re.search(r"^  decode\.torch B=16 L=1024 +host [0-9.e+-]+ gCO2e \(.*model:", out.stdout, re.M)
    assert re.search(r"^  prefill\.torch B=1 N=256 +host [0-9.e+-]+ gCO2e \(", out.stdout, re.M)


@pytest.mark.parametrize("delay_s", [0.2, 0.35, 0.5])  # inside numpy/scipy, torch, the stages
def test_ctrl_c_while_importing_is_one_line_and_exit_130(tmp_path, delay_s):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "bench", f"results_dir={tmp_path}"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)  # the imports take seconds here
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().count("\n") == 0 and err.startswith("bench: interrupted") and "Traceback" not in err, err
    assert not point_files(tmp_path)


def test_ctrl_c_in_a_plan_says_it_wrote_nothing(tmp_path):
    import signal
    import threading
    import time

    proc = subprocess.Popen([sys.executable, "-m", "bench", "task=plan", f"results_dir={tmp_path}"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Past the imports: Hydra logs the job's launch once everything is imported, and the plan then
    # runs for seconds (its inputs, then the capacity search); a fixed sleep would wait too long
    # on an idle machine and too little on a loaded one.
    watchdog = threading.Timer(120, proc.kill)  # a job that never launches ends the read with EOF
    watchdog.start()
    try:
        launched = any("#0 : task=plan" in line for line in iter(proc.stdout.readline, ""))
    finally:
        watchdog.cancel()
    assert launched, proc.communicate(timeout=60)[1][-2000:]
    time.sleep(1.0)  # into the plan's work
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "plan was not finished and plan.md was not written" in err and "Traceback" not in err, err
    assert not (tmp_path / "plan" / "plan.md").exists()


def test_a_swallowed_ctrl_c_stops_a_plan_before_it_writes_and_a_late_one_says_what_was_written(tmp_path, monkeypatch):
    # A Ctrl-C raised inside a finaliser is swallowed (Python cannot raise it there) and only sets the
    # entry's flag: the plan must still stop before its files, as the interrupted line says.
    import types

    import bench.__main__ as entry_module
    from bench.cli import main as cli_main
    from bench.tasks import plan as plan_task

    monkeypatch.setattr(plan_task, "inputs_of", lambda cfg: None)
    monkeypatch.setattr(plan_task.plan, "run", lambda inputs: object())
    cfg = types.SimpleNamespace(plan=types.SimpleNamespace(report_dir=str(tmp_path)), results_dir=str(tmp_path))
    monkeypatch.setattr(cli_main, "INTERRUPTED", True)
    with pytest.raises(KeyboardInterrupt):
        plan_task.run(cfg)
    assert not list(tmp_path.iterdir()) and plan_task.WRITTEN is None
    assert "plan.md was not written" in entry_module.interrupted_line(["task=plan"])
    # Swallowed while the report was composed (after the solve's check): still nothing written.
    monkeypatch.setattr(cli_main, "INTERRUPTED", False)

    def composed_then_interrupted(result, pngs):
        cli_main.INTERRUPTED = True  # (monkeypatch restores it)
        return "report"

    monkeypatch.setattr(plan_task.plan_report, "plots", lambda result, out: [])
    monkeypatch.setattr(plan_task.plan_report, "markdown", composed_then_interrupted)
    monkeypatch.setattr(plan_task.validation_report, "plan_section", lambda *a, **k: [])
    cfg.plan.validation_measurements, cfg.plan.model, cfg.plan.gpus = None, "m", []
    cfg.validate = types.SimpleNamespace(itl_slo_s=0.05)
    monkeypatch.setattr(plan_task, "inputs_of", lambda cfg: None)
    monkeypatch.setattr(plan_task.plan, "run", lambda inputs: types.SimpleNamespace(inputs=types.SimpleNamespace(
        gpu_profiles={})))
    with pytest.raises(KeyboardInterrupt):
        plan_task.run(cfg)
    assert not (tmp_path / "plan.md").exists() and not (tmp_path / "plans.csv").exists()
    assert "validate may be incomplete" in entry_module.interrupted_line(["task=validate"])
    # Interrupted while the report printed, after its files: the line says they were written.
    monkeypatch.setattr(plan_task, "WRITTEN", tmp_path / "plan.md")
    line = entry_module.interrupted_line(["task=plan"])
    assert line.startswith("bench: interrupted after the plan was written") and str(tmp_path / "plan.md") in line
