"""`python -m bench` end to end on the CPU: single run, multirun, resume, bad input."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["heads=4", "kv_heads=2", "head_dim=64", "seq_len=32", "context_len=64",
         "measure.trials=2", "measure.min_window_s=0.05", "measure.warmup_s=0.01"]
METHODS = ("nvml_counter", "nvml_power_integration", "rapl")


def bench(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags precede the overrides
    args = flags + [a for a in args if not a.startswith("-")]
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=240)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def point_files(results: Path) -> list[Path]:
    return sorted((results / "points").glob("*.json")) if (results / "points").is_dir() else []


def test_single_point_run_writes_one_labelled_row(tmp_path):
    out = bench("sweep=none", "kernel=decode.torch_paged", "batch_size=3", f"results_dir={tmp_path}", *SMALL)
    [path] = point_files(tmp_path)
    row = json.loads(path.read_text())
    assert row["kernel"] == "decode.torch_paged" and row["batch_size"] == 3 and row["seq_len"] is None
    assert row["time_per_call_s"] > 0 and row["energy_per_token_j"] > 0
    for domain in row["energy_domains"].split("+"):
        method = row[f"{domain}_method"]
        assert method in METHODS or method.startswith("model:")
    assert row["env_torch_version"] and row["env_cpu_model"]
    assert row["quality"] in ("ok", "noisy") and row["trials_discarded"] == 1
    assert len(json.loads(row["trials_updates"])) == 2  # one entry per kept window (measure.trials=2)
    assert row["clocks_mode"] == "observe" and row["throttled"] is False
    table = pd.read_csv(tmp_path / "points.csv")
    assert len(table) == 1 and table.loc[0, "key"] == row["key"]
    assert "measured points" in out.stdout


def test_multirun_and_resume_without_loss_or_duplicates(tmp_path):
    sweep = ["-m", "kernel=prefill.torch,decode.torch", "batch_size=1,2", f"results_dir={tmp_path}", *SMALL]
    bench(*sweep)
    files = point_files(tmp_path)
    assert len(files) == 4
    lost = files[1]
    kept = {p.name: p.read_text() for p in files if p != lost}
    lost.unlink()  # as if the sweep had been killed before this point
    out = bench(*sweep)
    assert (out.stdout + out.stderr).count("already measured") == 3
    assert "4/4 points (100%), 3 from an earlier run" in out.stderr  # the progress line tells them apart
    again = point_files(tmp_path)
    assert [p.name for p in again] == [p.name for p in files]
    assert all(p.read_text() == kept[p.name] for p in again if p.name in kept)  # not re-measured
    table = pd.read_csv(tmp_path / "points.csv")
    assert len(table) == 4 and table["key"].is_unique


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["batch_size=0"], "batch_size"),
        (["kernel=nope"], "kernel"),
        (["dtype=fp7"], "dtype"),
        (["heads=6", "kv_heads=4"], "kv_heads"),
        (["-m", "batch_size=1,0"], "batch_size"),  # a bad job anywhere in a sweep stops it first
        pytest.param(["device=cuda"], "device", marks=pytest.mark.skipif(
            __import__("torch").cuda.is_available(), reason="needs a machine without a GPU")),
    ],
)
def test_bad_input_fails_before_any_work(tmp_path, overrides, field):
    results = tmp_path / "results"
    proc = bench(*SMALL, *overrides, f"results_dir={results}", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench: invalid {field}="), proc.stderr
    assert not results.exists()


def test_unwritable_results_dir_fails_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    proc = bench(f"results_dir={tmp_path}/file/results", *SMALL, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("bench: invalid results_dir=")


def test_default_main_job_measures_prefill_and_decode(tmp_path):
    out = bench(f"results_dir={tmp_path}")
    table = pd.read_csv(tmp_path / "points.csv")
    assert set(table["phase"]) == {"prefill", "decode"} and len(table) == 6
    assert (table["energy_per_token_j"] > 0).all()
    assert "mJ/token" in out.stdout
    # The closing carbon estimate names each point fully (two points never share a label).
    assert re.search(r"^  decode\.torch B=16 L=1024 +[0-9.e+-]+ gCO2e \(", out.stdout, re.M)
    assert re.search(r"^  prefill\.torch B=1 N=256 +[0-9.e+-]+ gCO2e \(", out.stdout, re.M)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_smoke_sweep_killed_mid_way_resumes_without_loss_or_duplicates(tmp_path, sig):
    import signal
    import time

    args = ["-m", "sweep=smoke", f"results_dir={tmp_path}", "measure.min_window_s=0.3"]
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not point_files(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert point_files(tmp_path), "no point was written before the deadline"
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    if sig == "SIGINT":  # Ctrl-C is a clean stop that says how to resume, not a traceback
        assert proc.returncode == 130, err
        assert "Rerun the same command" in err and "Traceback" not in err
    measured = {p.name: p.read_text() for p in point_files(tmp_path)}
    assert 1 <= len(measured) < 4  # killed part way
    bench(*args)
    files = point_files(tmp_path)
    assert len(files) == 4
    assert all(measured[name] == (tmp_path / "points" / name).read_text() for name in measured)  # kept, not redone
    table = pd.read_csv(tmp_path / "points.csv")
    assert len(table) == 4 and table["key"].is_unique


def test_sweep_grids_are_concatenated_in_a_seeded_random_order():
    from hydra_plugins.bench_sweeper.validating_sweeper import ValidatingSweeper

    grids = [{"kernel": "prefill.torch", "batch_size": "1,2", "seq_len": "64,128"},
             {"kernel": "decode.torch", "batch_size": "1,2,4"},
             {"kernel": "decode.torch", "batch_size": "4"}]  # overlaps the second grid

    def jobs(order, seed=0, args=("context_len=99",)):
        return ValidatingSweeper(None, None, grids=grids, order=order, seed=seed).jobs(list(args))

    in_grid_order = jobs("grid")
    assert len(in_grid_order) == 4 + 3  # no prefill x decode cross terms, the overlap measured once
    assert in_grid_order[0] == ["kernel=prefill.torch", "batch_size=1", "seq_len=64", "context_len=99"]
    assert all("context_len=99" in job for job in in_grid_order)  # command-line values reach every grid
    shuffled = jobs("random", seed=3)
    assert sorted(shuffled) == sorted(in_grid_order) and shuffled != in_grid_order
    assert jobs("random", seed=3) == shuffled and jobs("random", seed=4) != shuffled
    assert len(jobs("grid", args=("batch_size=8",))) == 2 + 1  # a command-line value replaces a swept one
    # A preset's grids are measurement points: fit, report and plan run once, or over what the
    # command line sweeps.
    sweeper = ValidatingSweeper(None, {"kernel": "prefill.torch,decode.torch"}, grids=grids, order="random")
    assert sweeper.jobs(["results_dir=x"], task="plan") == [["results_dir=x"]]
    assert sweeper.jobs(["grid=ciso_2022,pjm_2022"], task="plan") == [["grid=ciso_2022"], ["grid=pjm_2022"]]


def test_a_device_held_by_another_job_is_a_clear_refusal(tmp_path):
    import socket

    from bench.lock import device_lock

    locks = tmp_path / "locks"
    with device_lock(locks, f"cpu-{socket.gethostname()}", wait_s=0):
        out = bench("sweep=none", "kernel=decode.torch", f"results_dir={tmp_path / 'r'}", f"lock.dir={locks}",
                    "lock.wait_s=0.3", *SMALL, check=False)
    assert out.returncode == 3
    assert "DeviceBusy: device cpu-" in out.stderr and "in use by another bench job" in out.stderr
    assert "Traceback" not in out.stderr
    assert not point_files(tmp_path / "r")
