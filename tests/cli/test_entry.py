"""The real `python -m bench` entry, in this process: bad input is one line and exit 2 before any
work, refusals one line and exit 3, and a user's case runs through measure, fit and report as a
built-in one does."""
import json
import types
import math
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.cli.runner import run_cli

# measure.lead_in_s: the CPU-time meter has no update period to wait out, and these tests are
# about the paths a run takes, not its fidelity (each point's idle phase and windows are each a
# lead-in longer: 0.1 s by default); two trials, none discarded (the discard is tested where a row records it).
SMALL = ["heads=4", "kv_heads=2", "head_dim=64", "seq_len=32", "context_len=64",
         "measure.trials=2", "measure.discard_first=false", "measure.min_window_s=0.05", "measure.warmup_s=0.01",
         "measure.lead_in_s=0.01"]
CUSTOM = "kernel.target=tests.kernels.custom_case_example:make_case"


def point_files(results: Path) -> list[Path]:
    return sorted((results / "points").glob("*.json")) if (results / "points").is_dir() else []


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["batch_size=0"], "batch_size"),
        (["kernel=nope"], "kernel"),
        (["dtype=fp7"], "dtype"),
        (["heads=6", "kv_heads=4"], "kv_heads"),
        (["-m", "batch_size=1,0"], "batch_size"),  # a bad job anywhere in a sweep stops it first
        (["batch_size=1.5"], "batch_size"),  # Hydra's type errors, worded as ours
        (["measure.trials=abc"], "measure.trials"),
        (["meter.cpu_tdp_w=lots"], "meter.cpu_tdp_w"),
        (["offload=gpu"], "offload"),
        (["-m", "batch_size=1,1.5"], "batch_size"),
        (["kernel=custom", "kernel.target=nowhere.at_all:make_case"], "kernel.target"),
        (["kernel=prefill.triton", "head_dim=80"], "head_dim"),
        pytest.param(["device=cuda"], "device", marks=pytest.mark.skipif(
            torch.cuda.is_available(), reason="needs a machine without a GPU")),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_any_work(tmp_path, overrides, field):
    results = tmp_path / "results"
    ran = run_cli(*SMALL, *overrides, f"results_dir={results}")
    assert ran.code == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bench: invalid {field}="), ran.stderr
    assert not results.exists()


def test_a_command_composes_its_config_once_before_its_jobs(tmp_path, monkeypatch):
    # Hydra composes the primary config to read `hydra.mode` and again for the multirun: the second
    # is handed the first (bench.cli.composing). A sweep of one bad job: the primary config once,
    # the job once (it was three).
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    modes = []
    real = ConfigLoaderImpl.load_configuration

    def counting(self, *a, **kw):
        modes.append(kw.get("run_mode"))
        return real(self, *a, **kw)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counting)
    ran = run_cli(*SMALL, "batch_size=0", f"results_dir={tmp_path}")
    assert ran.code == 2 and ran.stderr.startswith("bench: invalid batch_size=0")
    assert len(modes) == 2, modes
    # A single run (`sweep=none` sets Hydra's run mode) composes for its mode as Hydra does, and an
    # override its mode forbids is still Hydra's own one-line refusal.
    modes.clear()
    ran = run_cli(*SMALL, "sweep=none", "batch_size=0", f"results_dir={tmp_path}")
    assert ran.code == 2 and ran.stderr.startswith("bench: invalid batch_size=0") and len(modes) == 2, modes
    ran = run_cli(*SMALL, "sweep=none", "batch_size=1,2", f"results_dir={tmp_path}")
    assert ran.code == 2 and ran.stderr.startswith("bench: Ambiguous value for argument 'batch_size=1,2'")
    assert ran.stderr.count("\n") == 1 and not (tmp_path / "points").exists()
    # The multirun's own check of its sweep overrides still runs on the handed-over config; a
    # config that does not compose costs no more compositions than Hydra makes.
    modes.clear()
    ran = run_cli(*SMALL, "-m", "hydra.verbose=true,false", f"results_dir={tmp_path}")
    assert ran.code == 2 and ran.stderr.startswith("bench: Sweeping over Hydra's configuration is not supported")
    modes.clear()
    ran = run_cli(*SMALL, "nosuch=1", f"results_dir={tmp_path}")
    assert ran.code == 2 and ran.stderr.startswith("bench: unknown setting nosuch") and len(modes) == 2, modes


def test_compositions_share_the_config_store_and_leave_it_as_registered(tmp_path):
    # Hydra deep-copies its config repository at every composition; the ConfigStore in it is
    # shared instead (bench.cli.composing), which holds only while composing never changes it:
    # overrides of values a stored node sets (an architecture preset's, a kernel option's) leave
    # the stored nodes as registered, and the next composition sees them so.
    import copy

    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    run_cli(*SMALL, "batch_size=0", f"results_dir={tmp_path}")  # (installs it, as every command does)
    assert copy.deepcopy(store) is store
    nodes = ("arch/llama3_8b.yaml", "kernel/decode.torch.yaml")
    before = [OmegaConf.to_container(store.load(n).node) for n in nodes]
    ran = run_cli("arch=llama3_8b", "heads=8", "kv_heads=8", "kernel=decode.torch", "kernel.target=x:y",
                  f"results_dir={tmp_path}")
    assert ran.code == 2 and ran.stderr.startswith("bench: invalid kernel.target='x:y'")
    assert [OmegaConf.to_container(store.load(n).node) for n in nodes] == before
    shown = run_cli("--cfg", "job", "arch=llama3_8b", "kernel=decode.torch", f"results_dir={tmp_path}")
    job = OmegaConf.create(shown.stdout)
    assert shown.code == 0 and (job.heads, job.kv_heads, job.kernel.target) == (32, 8, None)


def test_unknown_setting_and_unparsable_override_are_one_line(tmp_path):
    for override, says in (("nosuch=1", "unknown setting nosuch"), ("batch_size=[", "cannot parse the override")):
        ran = run_cli(override, f"results_dir={tmp_path / 'r'}")
        assert ran.code == 2 and ran.stderr.count("\n") == 1 and says in ran.stderr, ran.stderr
    assert not (tmp_path / "r").exists()


def test_unwritable_results_dir_fails_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    ran = run_cli(f"results_dir={tmp_path}/file/results", *SMALL)
    assert ran.code == 2
    assert ran.stderr.strip().startswith("bench: invalid results_dir=")


@pytest.mark.long
def test_multirun_and_resume_without_loss_or_duplicates(tmp_path, monkeypatch):
    # Both runs in this process: a start-up of its own adds nothing to what is checked here (the
    # main job and the kill tests in tests/test_end_to_end.py sweep in processes of their own).
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    composed = []  # each job's config is composed once, for its validation, and launched as composed
    compose = ConfigLoaderImpl.load_sweep_config
    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config",
                        lambda self, master, overrides: composed.append(tuple(overrides)) or compose(self, master, overrides))
    sweep = ["-m", "kernel=prefill.torch,decode.torch", "batch_size=1,2", f"results_dir={tmp_path}", *SMALL]
    first = run_cli(*sweep)
    assert first.code == 0, first.stderr[-3000:]
    assert len(composed) == len(set(composed)) == 4
    logs = [d for d in (tmp_path / "logs").iterdir() if d.is_dir()]  # one sweep, one folder of job logs
    assert len(logs) == 1 and {p.name for p in logs[0].iterdir()} >= {"multirun.yaml", "0", "1", "2", "3"}
    files = point_files(tmp_path)
    assert len(files) == 4
    lost = files[1]
    kept = {p.name: p.read_text() for p in files if p != lost}
    lost.unlink()  # as if the sweep had been killed before this point
    out = run_cli(*sweep)
    assert out.code == 0, out.stderr[-3000:]
    assert (out.stdout + out.stderr).count("already measured") == 3
    assert "4/4 points (100%), 3 from an earlier run" in out.stderr  # the progress line tells them apart
    again = point_files(tmp_path)
    assert [p.name for p in again] == [p.name for p in files]
    assert all(p.read_text() == kept[p.name] for p in again if p.name in kept)  # not re-measured
    table = pd.read_csv(tmp_path / "points.csv")
    assert len(table) == 4 and table["key"].is_unique


@pytest.mark.long
def test_a_ctrl_c_python_swallowed_still_stops_the_sweep_before_its_next_point(tmp_path, monkeypatch):
    # A KeyboardInterrupt raised inside a finalizer or a callback is only printed ("Exception ignored"),
    # but the handler had set the entry's flag: the sweep must stop, not run on and exit 0.
    import bench.cli.main as cli_main
    from bench import tasks

    measure = tasks.TASKS["measure"]

    def measure_then_lose_a_ctrl_c(cfg):
        row = measure(cfg)
        cli_main.INTERRUPTED = True  # as `_on_sigint` does, its raise then lost
        return row

    monkeypatch.setitem(tasks.TASKS, "measure", measure_then_lose_a_ctrl_c)
    monkeypatch.setattr(cli_main, "INTERRUPTED", False)
    sweep = ["-m", "kernel=prefill.torch,decode.torch", "batch_size=1,2", f"results_dir={tmp_path}", *SMALL]
    with pytest.raises(KeyboardInterrupt):
        run_cli(*sweep)
    assert len(point_files(tmp_path)) == 1  # the point it finished, and none after
    # The next run in this process is not the interrupted one: it resumes and measures the rest
    assert cli_main.INTERRUPTED
    monkeypatch.setitem(tasks.TASKS, "measure", measure)
    try:
        resumed = run_cli(*sweep)
    except KeyboardInterrupt:  # the old interrupt taken for this run's: a failure, not a stop of the suite
        pytest.fail("a run after an interrupted one stopped as interrupted")
    assert resumed.code == 0, resumed.stderr[-2000:]
    assert len(point_files(tmp_path)) == 4


def test_a_ctrl_c_swallowed_in_a_callback_is_silent_and_the_flag_stays_set(monkeypatch, capsys):
    # Python reports a KeyboardInterrupt raised in a weakref callback as "Exception ignored ...
    # Traceback" and goes on: the hook says nothing (the flag stops the run), and reports anything else.
    import gc
    import sys
    import weakref

    import bench.cli.main as cli_main

    class Thing:
        pass

    def interrupted(_):
        raise KeyboardInterrupt  # as `_on_sigint` does when the signal lands in the callback

    monkeypatch.setattr(sys, "unraisablehook", cli_main.on_unraisable(sys.__unraisablehook__))  # Python's own report beneath
    monkeypatch.setattr(cli_main, "INTERRUPTED", True)
    thing = Thing()
    ref = weakref.ref(thing, interrupted)
    del thing
    gc.collect()
    assert ref() is None  # the callback ran, and raised
    assert "Exception ignored" not in capsys.readouterr().err
    seen = []
    hook = cli_main.on_unraisable(seen.append)
    other = types.SimpleNamespace(exc_value=ValueError("a real one"))
    hook(other)  # any other error is reported as before
    monkeypatch.setattr(cli_main, "INTERRUPTED", False)
    stray = types.SimpleNamespace(exc_value=KeyboardInterrupt())
    hook(stray)  # and so is one with no Ctrl-C of ours behind it
    assert seen == [other, stray]


def test_a_device_held_by_another_job_is_a_clear_refusal(tmp_path):
    from bench.measure.lock import device_lock

    locks = tmp_path / "locks"
    with device_lock(locks, f"cpu-{socket.gethostname()}", wait_s=0):
        ran = run_cli("sweep=none", "kernel=decode.torch", f"results_dir={tmp_path / 'r'}", f"lock.dir={locks}",
                      "lock.wait_s=0.3", *SMALL)
    assert ran.code == 3
    assert "DeviceBusy: device cpu-" in ran.stderr and "in use by another bench job" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert not point_files(tmp_path / "r")


def test_single_point_run_writes_one_labelled_row_with_the_case_traits(tmp_path):
    keep_first = [a if a != "measure.discard_first=false" else "measure.discard_first=true" for a in SMALL]
    ran = run_cli("sweep=none", "kernel=decode.torch_paged", "batch_size=3", f"results_dir={tmp_path}", *keep_first)
    assert ran.code == 0, ran.stderr
    [path] = point_files(tmp_path)
    row = json.loads(path.read_text())
    assert row["kernel"] == "decode.torch_paged" and row["batch_size"] == 3 and row["seq_len"] is None
    assert row["impl_family"] == "sdpa" and row["paged"] is True and row["offload_mode"] == "none"
    assert row["uses_triton"] is False and row["phase"] == "decode"
    assert row["time_per_call_s"] > 0 and row["energy_per_token_j_incl_model"] > 0
    assert row["measured_domains"] == "" and math.isnan(row["measured_energy_per_token_j"])  # the CPU model is no measurement
    assert row["clocks_mode"] == "observe" and len(json.loads(row["trials_updates"])) == 2
    for domain in row["energy_domains"].split("+"):
        method = row[f"{domain}_method"]
        assert method in ("nvml_counter", "nvml_power_integration", "rapl") or method.startswith("model:")
    assert row["env_torch_version"] and row["env_cpu_model"]
    assert row["quality"] in ("ok", "noisy") and row["trials_discarded"] == 1 and row["throttled"] is False
    table = pd.read_csv(tmp_path / "points.csv")
    assert len(table) == 1 and table.loc[0, "key"] == row["key"]
    assert "measured points" in ran.stdout


@pytest.mark.long
def test_a_users_case_is_swept_measured_fitted_and_reported_like_a_builtin(tmp_path):
    results = tmp_path / "results"
    # This test is about the path a user's case takes, not about fidelity: the CPU-time meter of a
    # loaded 2-core VM at 0.05 s windows can spread two trials by more than their mean, so the CV
    # thresholds are set past any two-trial spread (at most sqrt(2)) and no point is dropped as
    # noisy; the batching fit needs three of the four.
    sweep = ["-m", "kernel=custom", CUSTOM, "batch_size=1,2,4,8", "context_len=64", "heads=4", "kv_heads=2",
             "head_dim=32", "measure.trials=2", "measure.discard_first=false", "measure.min_window_s=0.05",
             "measure.warmup_s=0.01", "measure.lead_in_s=0.01",
             "measure.cv_threshold=100", "measure.cpu_cv_threshold=100", f"results_dir={results}"]
    ran = run_cli(*sweep)
    assert ran.code == 0, ran.stderr[-2000:]
    table = pd.read_csv(results / "points.csv")
    assert len(table) == 4 and set(table["kernel"]) == {"decode.naive_einsum"}
    assert set(table["impl_family"]) == {"custom"} and set(table["kernel_target"]) == {CUSTOM.split("=")[1]}
    # The factory's own work model is what the row carries.
    row = table[table["batch_size"] == 4].iloc[0]
    assert row["flops_per_call"] == 4.0 * 4 * 4 * 32 * 64 and row["tokens_per_call"] == 4
    # The closing fit ran on it: the batching curve of the user's case is in the run's profile.
    profile = json.loads(next((results / "profile").glob("*.json")).read_text())
    assert any(k.startswith("decode.naive_einsum ") for k in profile["fits"]["batching"]), profile["meta"]
    # A second run of the same sweep measures nothing again (the target is part of the key).
    again = run_cli(*sweep)
    assert (again.stdout + again.stderr).count("already measured") == 4
    rep = run_cli("task=report", f"results={results}", "hardware=users-case", f"report_dir={tmp_path / 'rep'}",
                  f"results_dir={results}")
    assert rep.code == 0, rep.stderr[-2000:]
    assert "decode.naive_einsum" in (tmp_path / "rep" / "users-case.md").read_text()


@pytest.mark.long
def test_a_point_that_fails_does_not_end_the_sweep_and_is_listed_at_the_end(tmp_path):
    results = tmp_path / "results"
    ran = run_cli("-m", "kernel=custom", "kernel.target=tests.kernels.failing_case:make_case", "batch_size=1,2,3",
                  "context_len=64", "heads=4", "kv_heads=2", "head_dim=32", "measure.trials=2",
                  "measure.min_window_s=0.02", "measure.warmup_s=0", "measure.lead_in_s=0.01",
                  "measure.cpu_cv_threshold=1.0",
                  "hydra.sweeper.order=grid", f"results_dir={results}")
    assert ran.code == 3, ran.stderr[-2000:]
    assert sorted(pd.read_csv(results / "points.csv")["batch_size"]) == [1, 3]  # the point after it ran
    assert "Traceback" not in ran.stderr
    *_, head, listed = ran.stderr.strip().splitlines()
    assert head == "bench: 1 point(s) of the sweep failed; the others are stored:"
    assert "batch_size=2" in listed and "MeasurementError: meter fault in 3 tries" in listed


def test_a_factory_named_like_a_builtin_case_is_refused(tmp_path):
    ran = run_cli("sweep=none", "kernel=custom",
                  "kernel.target=tests.kernels.custom_case_example:make_prefill_named_like_a_builtin",
                  f"results_dir={tmp_path}", *SMALL)
    assert ran.code == 2 and "built-in case's name" in ran.stderr and ran.stderr.count("\n") == 1, ran.stderr
