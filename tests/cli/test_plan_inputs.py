"""`task=plan` with a bad trace, grid or validation file: one line on stderr and exit 2 from
validation, before any planning work (no results folder is made); and a file that is fine for it."""
import json
from pathlib import Path

import pytest

from tests.cli.runner import run_cli

# Refusals before any work (compositions, validation, a small CSV or JSON read by pandas' C parser:
# one thread, no subprocess): these run beside the realtime tests (tests/conftest.py).
pytestmark = pytest.mark.quiet

REPO = Path(__file__).resolve().parents[2]

TRACE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
BAD_TRACES = {
    "trace.txt": TRACE_HEADER + "0,1,1\n",
    "empty.csv": "",
    "header_only.csv": TRACE_HEADER,
    "broken.jsonl": json.dumps({"TIMESTAMP": 0, "ContextTokens": 1, "GeneratedTokens": 1}) + "\n{oops\n",
    "nan_time.csv": TRACE_HEADER + "0,1,1\n,1,1\n",
    "ms_as_s.csv": TRACE_HEADER + "0,1,1\n40000000,1,1\n",
    "long_prompt.csv": TRACE_HEADER + "0,100000,10\n",  # with workload.over_context=refuse
    # Epoch milliseconds read as seconds: an hour of them spans 42 days, under the year's check.
    "epoch_ms.csv": TRACE_HEADER + "1700000000000,10,5\n1700003600000,10,5\n",
    "mixed.jsonl": "".join(json.dumps({"TIMESTAMP": t, "ContextTokens": 10, "GeneratedTokens": 5}) + "\n"
                           for t in (4.5, "2023-11-16 18:15:46", 9.0, "2023-11-16 18:20:00")),
    "bool_tokens.csv": TRACE_HEADER + "0,True,5\n1,False,5\n",
    "fraction_tokens.csv": TRACE_HEADER + "0,100.7,5\n",
}


def one_line_exit_2(ran, results) -> str:
    assert ran.code == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench: invalid "), ran.stderr
    assert not results.exists()
    return lines[0]


@pytest.mark.parametrize("name, says", [
    ("trace.txt", "unknown format '.txt'"),
    ("empty.csv", "has no requests"),
    ("header_only.csv", "has no requests"),
    ("broken.jsonl", "broken.jsonl: line 2 is not JSON"),
    ("nan_time.csv", "missing time in column 'TIMESTAMP' at row 1"),
    ("ms_as_s.csv", "set workload.time_unit=ms"),
    ("long_prompt.csv", "1 of 1 request exceeds the model's 8192-token context"),
    ("epoch_ms.csv", "is 53870 years or more from 1970; set workload.time_unit=ms"),
    ("mixed.jsonl", "column 'TIMESTAMP' mixes numbers and dates (e.g. '4.5' at row 0)"),
    ("bool_tokens.csv", "column 'ContextTokens' holds true/false at row 0"),
    ("fraction_tokens.csv", "column 'ContextTokens' has 100.7 tokens at row 0, not a whole number"),
])
def test_a_bad_trace_is_one_line_and_exit_2(tmp_path, name, says):
    path = tmp_path / name
    path.write_text(BAD_TRACES[name])
    results = tmp_path / "results"
    ran = run_cli("task=plan", f"workload.path={path}", "workload.over_context=refuse", f"results_dir={results}")
    assert says in one_line_exit_2(ran, results)


@pytest.mark.parametrize("override, field", [
    ("workload.time_unit=h", "workload.time_unit"),
    ("workload.over_context=clip", "workload.over_context"),
    ("workload.offline_share=1.0", "workload"),
    ("workload.seed=-1", "workload.seed"),
    ("grid.start=garbage", "grid.start"),
    ("grid.max_gap_h=-1", "grid.max_gap_h"),
    ("plan.recycle_extra_gpu_years=-10", "plan.recycle_extra_gpu_years"),
])
def test_a_bad_workload_setting_names_its_field(tmp_path, override, field):
    results = tmp_path / "results"
    line = one_line_exit_2(run_cli("task=plan", override, f"results_dir={results}"), results)
    assert line.startswith(f"bench: invalid {field}=")


@pytest.mark.parametrize("content, says", [
    ("timestamp,intensity_g_per_kwh\n2022-07-15 00:00+00:00,n/a\n", "has text 'n/a' at row 0"),
    # One hour of values is a series of one hour, not a constant for every hour of the period.
    ("timestamp,intensity_g_per_kwh\n2022-07-15 00:00+00:00,100\n", "24 h from 2022-07-15 00:00:00+00:00 is outside it"),
    ("", "is empty"),
])
def test_a_bad_grid_file_is_one_line_and_exit_2(tmp_path, content, says):
    path = tmp_path / "grid.csv"
    path.write_text(content)
    results = tmp_path / "results"
    ran = run_cli("task=plan", "grid=csv", f"grid.path={path}", f"results_dir={results}")
    assert says in one_line_exit_2(ran, results)


@pytest.mark.parametrize("overrides, says", [
    (["grid.scope=total"], "bench: invalid grid.scope='total': choose one of direct, lifecycle"),
    (["grid.scope=lifecycle"], "bench: invalid grid.scope='lifecycle': applies to grid=constant, country, csv"),
    (["grid.timezone=Mars/Olympus"], "bench: invalid grid.timezone='Mars/Olympus': is not a time zone"),
])
def test_a_grid_setting_that_cannot_hold_is_one_line_and_exit_2(tmp_path, overrides, says):
    # For every task: a measurement's closing carbon estimate reads the grid too.
    for task in ("plan", "measure"):
        results = tmp_path / task
        assert one_line_exit_2(run_cli(f"task={task}", *overrides, f"results_dir={results}"), results).startswith(says)


def test_a_validation_file_vllm_could_not_have_run_on_the_plans_model_is_one_line(tmp_path):
    # The plan report replays the file on the plan's model, as task=validate does, so it refuses the
    # same rows: Qwen3-32B on one H100 at 3,072 requests cannot hold one longest request.
    path = tmp_path / "m.csv"
    path.write_text("max_num_seqs,avg_batch_size,avg_output_len,energy_per_token_j,p90_itl_ms,gpu_model\n"
                    "8,7.9,400,0.45,7.7,H100\n3072,3000,400,0.05,90,H100\n")
    results = tmp_path / "results"
    ran = run_cli("task=plan", "plan.model=qwen3_32b", f"plan.validation_measurements={path}",
                  f"results_dir={results}")
    line = one_line_exit_2(ran, results)
    assert line.startswith("bench: invalid plan.validation_measurements=") and "max_num_seqs 3072" in line
    assert "vLLM would not start" in line
    # The same rows on an 8B model leave room for it: not refused.
    from bench.carbon.validation import measurements
    from bench.cli.validate import refuse_rows_vllm_could_not_run

    refuse_rows_vllm_could_not_run("plan.validation_measurements", measurements.ValidateConf(
        measurements=str(path), model="llama3_1_8b", gpu="h100_sxm"), measurements.read(str(path)))


def test_a_validation_file_of_a_gpu_the_plan_takes_from_a_measured_profile_is_not_refused(tmp_path):
    # The report does not replay the file on a GPU type the plan took from a measured profile
    # (`plan_section` says so), so rows vLLM could not have run there are no reason to refuse it.
    import shutil

    from hydra import compose, initialize_config_dir

    from bench.cli.schema import to_typed
    from bench.cli.store import register_configs
    from bench.cli.validate import ConfigError, validate

    path = tmp_path / "m.csv"
    path.write_text("max_num_seqs,avg_batch_size,avg_output_len,energy_per_token_j,p90_itl_ms,gpu_model\n"
                    "8,7.9,400,0.45,7.7,H100\n3072,3000,400,0.05,90,H100\n")
    # A profile the planner would take for the H100 (what it holds does not matter to validation):
    # the shipped one, its device renamed.
    measured, empty = tmp_path / "profiles", tmp_path / "none"
    measured.mkdir()
    empty.mkdir()
    shipped = REPO / "profiles" / "cpu-amd-epyc-2core"
    shutil.copy(shipped.with_suffix(".csv"), measured / "h100-test.csv")
    profile = json.loads(shipped.with_suffix(".json").read_text())
    profile["meta"]["device_names"] = ["NVIDIA H100 80GB HBM3"]
    (measured / "h100-test.json").write_text(json.dumps(profile))
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        def cfg(profiles_dir):
            return to_typed(compose("config", overrides=[
                "task=plan", "plan.model=qwen3_32b", f"plan.validation_measurements={path}",
                "plan.cpu_profile=null", f"profiles_dir={profiles_dir}", f"results_dir={tmp_path / 'results'}"]))

        with pytest.raises(ConfigError, match="max_num_seqs 3072"):
            validate(cfg(empty))
        validate(cfg(measured))  # the measured profile's H100: not refused


@pytest.mark.parametrize("broken, says", [
    ("json", "is not a readable profile"),  # cut off mid-write, before atomic writes or by hand
    ("csv", "its tables are unreadable"),
])
@pytest.mark.parametrize("role", ["gpu", "cpu"])
def test_an_unreadable_profile_the_plan_would_read_is_one_line_and_exit_2(tmp_path, broken, says, role):
    # A GPU type's measured profile (found by device name) or the Reuse CPU profile (by name): both
    # were a traceback mid-plan when their files could not be read.
    import shutil

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    shipped = REPO / "profiles" / "cpu-amd-epyc-2core"
    name = "h100-test" if role == "gpu" else "cpu-amd-epyc-2core"
    shutil.copy(shipped.with_suffix(".csv"), profiles / f"{name}.csv")
    profile = json.loads(shipped.with_suffix(".json").read_text())
    if role == "gpu":
        profile["meta"]["device_names"] = ["NVIDIA H100 80GB HBM3"]
    text = json.dumps(profile)
    (profiles / f"{name}.json").write_text(text[: len(text) // 2] if broken == "json" else text)
    if broken == "csv":
        (profiles / f"{name}.csv").write_text("")
    results = tmp_path / "results"
    ran = run_cli("task=plan", f"profiles_dir={profiles}", f"results_dir={results}",
                  *(["plan.cpu_profile=null"] if role == "gpu" else []))
    line = one_line_exit_2(ran, results)
    assert says in line and name in line
    assert line.startswith("bench: invalid profiles_dir=" if role == "gpu" else "bench: invalid plan.cpu_profile=")
