"""Every config option composes and validates; every bad value names its field."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from bench.cli.errors import hydra_error_line, is_hydra_input_error
from bench.cli.schema import BenchConf, to_typed
from bench.cli.store import register_configs
from bench.cli.validate import ConfigError, validate
from kernels import REGISTRY

CONF = Path(__file__).resolve().parents[2] / "conf"
register_configs()

# Composing and validating configs is one thread of Python and no subprocess: these run beside the
# realtime tests (tests/conftest.py).
pytestmark = pytest.mark.quiet


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")  # one Hydra initialisation for the module: each compose is independent
def composer():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        def composed(*overrides: str, hydra: bool = False):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=hydra)
            return cfg if hydra else to_typed(cfg)  # what bench.cli hands down: the typed config

        yield composed


def test_defaults_compose_and_validate(composer, tmp_path):
    cfg = composer(f"results_dir={tmp_path}")
    validate(cfg)
    assert isinstance(cfg, BenchConf)


@pytest.mark.parametrize("option", options("sweep"))
def test_every_sweep_option_composes(composer, option, tmp_path):
    cfg = composer(f"sweep={option}", f"results_dir={tmp_path}", hydra=True)
    assert str(cfg.hydra.mode) in ("RunMode.RUN", "RunMode.MULTIRUN")
    absent = object()
    keys = list(cfg.hydra.sweeper.params or {}) + [k for grid in cfg.hydra.sweeper.grids or [] for k in grid]
    assert keys or option == "none", "a sweep preset sweeps something"
    for key in keys:
        assert OmegaConf.select(cfg, key, default=absent) is not absent, f"swept key {key} is not in the schema"


def test_default_job_sweeps_prefill_and_decode(composer):
    cfg = composer(hydra=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    kernels = cfg.hydra.sweeper.params.kernel.split(",")
    assert {REGISTRY.get(k).phase for k in kernels} == {"prefill", "decode"}


def test_each_process_has_its_own_run_and_sweep_folder(composer, tmp_path):
    import os

    cfg = composer(f"results_dir={tmp_path}", hydra=True)
    for folder in (cfg.hydra.run.dir, cfg.hydra.sweep.dir):
        assert folder.startswith(f"{tmp_path}/logs/") and folder.endswith(f"-{os.getpid()}")


@pytest.mark.parametrize("kernel", REGISTRY.names())
def test_every_kernel_case_is_an_option_that_validates_or_says_why_not(composer, kernel, tmp_path):
    # Adding a case to the registry is all it takes to select it (`kernel=<name>`).
    cfg = composer(f"kernel={kernel}", f"results_dir={tmp_path}")
    assert cfg.kernel.name == kernel
    reason = REGISTRY.get(kernel).unsupported_reason(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if reason is None:
        validate(cfg)
    else:
        with pytest.raises(ConfigError, match="kernel"):
            validate(cfg)


@pytest.mark.parametrize(
    "override",
    ["device=cpu", "dtype=float16", "dtype=bfloat16", "dtype=float32", "meter.host=model", "meter.host=none",
     "meter.gpu=none", "meter.cpu_tdp_w=200", "meter.cpu_cores=64", "threads=2", "causal=false", "measure.trials=1",
     "kernel=decode.torch offload=cpu offload.threads=1", "kernel=decode.torch offload=split offload.fraction=0",
     "kernel=decode.torch offload=split offload.fraction=1", "kernel=decode.torch offload=stream offload.chunks=2",
     "measure.thermal=preheat", "measure.thermal=cooldown", "measure.discard_first=false", "gpu.busy_check=error",
     "codecarbon.enabled=true codecarbon.country=FRA"],
)
def test_valid_overrides_pass(composer, override, tmp_path):
    validate(composer(*override.split(), f"results_dir={tmp_path}"))


def test_arch_sets_the_layer_widths_from_the_one_table_and_a_later_key_wins(composer):
    from kernels.arch import ARCHS

    cfg = composer("arch=cpu_small", "heads=4")
    dims = ARCHS["cpu_small"]
    assert (cfg.hidden, cfg.ffn, cfg.kv_heads, cfg.head_dim, cfg.heads) == (dims.hidden, dims.ffn, dims.kv_heads,
                                                                            dims.head_dim, 4)


@pytest.mark.parametrize("mode", options("offload"))
def test_offload_group_sets_the_mode(composer, mode):
    assert composer("kernel=decode.torch", f"offload={mode}").offload.mode == mode


@pytest.mark.parametrize(
    "overrides, field, hint",
    [
        (["batch_size=0"], "batch_size", ">= 1"),
        (["kernel=nope"], "kernel", "decode.torch"),  # a config group: refused as Hydra composes
        (["arch=llama9"], "arch", "cpu_small"),
        (["kernel=gemm.o.decode", "hidden=0"], "hidden", ">= 1"),
        (["kernel=layer.prefill", "head_dim=63"], "head_dim", "must be even"),
        (["batch_size=1.5"], "batch_size", "must be an integer"),  # type errors, refused as Hydra composes
        (["measure.trials=abc"], "measure.trials", "must be an integer"),
        (["meter.cpu_tdp_w=lots"], "meter.cpu_tdp_w", "must be a number"),
        (["causal=maybe"], "causal", "true or false"),
        (["offload=gpu"], "offload", "cpu, none, split, stream"),
        (["kernel=custom"], "kernel.target", "<module>:<function>"),
        (["kernel=custom", "kernel.target=tests.kernels.custom_case_example:nope"], "kernel.target", "no function"),
        (["kernel=custom", "kernel.target=os:getcwd"], "kernel.target", "not a kernels.Case"),
        (["kernel=decode.torch", "kernel.target=os:getcwd"], "kernel.target", "only read with kernel=custom"),
        (["kernel=prefill.triton", "head_dim=96"], "head_dim", "64, 128"),
        (["measure.warmup_s=inf"], "measure.warmup_s", "finite"),
        (["measure.min_window_s=nan"], "measure.min_window_s", "finite"),
        (["lock.wait_s=inf"], "lock.wait_s", "finite"),
        (["kernel=prefill.triton", "device=cpu", "dtype=bfloat16"], "dtype", "bf16 dots"),
        (["kernel=decode.triton", "offload=split", "device=cpu", "dtype=bfloat16"], "dtype", "bf16 dots"),
        (["dtype=fp7"], "dtype", "bfloat16"),
        (["heads=6", "kv_heads=4"], "kv_heads", "[1, 2, 3, 6]"),
        (["task=train"], "task", "measure"),
        (["device=tpu"], "device", "cuda"),
        (["seq_len=-3"], "seq_len", ">= 1"),
        (["measure.trials=0"], "measure.trials", ">= 1"),
        (["measure.min_window_s=0"], "measure.min_window_s", "> 0"),
        (["meter.host=wattmeter"], "meter.host", "rapl"),
        (["meter.gpu=dcgm"], "meter.gpu", "nvml"),
        (["meter.cpu_tdp_w=-5"], "meter.cpu_tdp_w", "> 0"),
        (["measure.thermal=sauna"], "measure.thermal", "preheat"),
        (["measure.cv_threshold=0"], "measure.cv_threshold", "> 0"),
        (["measure.min_updates=0"], "measure.min_updates", ">= 1"),
        (["gpu.clocks.mode=turbo"], "gpu.clocks.mode", "observe"),
        (["gpu.clocks.mode=lock"], "gpu.clocks.mode", "sm_mhz"),
        (["gpu.clocks.sm_mhz=1410"], "gpu.clocks.sm_mhz", "mode=lock"),
        (["gpu.busy_check=maybe"], "gpu.busy_check", "warn"),
        (["codecarbon.enabled=true", "codecarbon.country=France"], "codecarbon.country", "alpha-3"),
        (["kernel=decode.torch", "offload=split", "offload.fraction=1.5"], "offload.fraction", "[0, 1]"),
        (["kernel=decode.torch", "offload=cpu", "offload.threads=-1"], "offload.threads", ">= 0"),
        (["kernel=decode.torch", "offload=stream", "offload.chunks=0"], "offload.chunks", ">= 1"),
        (["kernel=prefill.torch", "offload=cpu"], "offload", "decode.triton and decode.torch"),
        (["kernel=prefill.triton", "device=cpu", "seq_len=4096"], "kernel", "Triton's CPU interpreter"),
        (["kernel=decode.torch_paged", "offload=split"], "offload", "contiguous"),
        (["task=plan", "plan.workers=-1"], "plan.workers", ">= 0"),
        (["task=plan", "plan.solve_budget_s=0"], "plan.solve_budget_s", "> 0"),
    ],
)
def test_bad_values_name_the_field_and_the_allowed_values(composer, overrides, field, hint, tmp_path):
    # The line `python -m bench` prints (after "bench: "), whether Hydra refuses the value as it
    # composes or our validation refuses it after.
    try:
        validate(composer(*overrides, f"results_dir={tmp_path}"))
    except ConfigError as err:
        assert err.field == field
        message = str(err)
    except Exception as err:  # noqa: BLE001 - only Hydra's input errors may get here
        assert is_hydra_input_error(err), err
        message = hydra_error_line(err)
    else:
        pytest.fail(f"{overrides} passed validation")
    assert message.startswith(f"invalid {field}=") and hint in message and "\n" not in message, message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_refused(composer, tmp_path):
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        validate(composer("device=cuda", f"results_dir={tmp_path}"))


def test_unwritable_results_dir_is_refused(composer, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="results_dir"):
        validate(composer(f"results_dir={tmp_path}/file/sub"))


@pytest.mark.parametrize("task, key", [("validate", "validate.out_dir"), ("plan", "plan.report_dir"),
                                       ("fit", "profiles_dir")])
def test_a_task_output_folder_at_or_under_a_regular_file_is_refused(composer, tmp_path, task, key):
    # (validate.out_dir on an existing file was a FileExistsError traceback once the replay was done)
    (tmp_path / "file").write_text("")
    (tmp_path / "m.csv").write_text("max_num_seqs,avg_batch_size,avg_output_len,energy_per_token_j,p90_itl_ms\n"
                                    "8,7.9,400,0.45,7.7\n")
    extra = {"validate": [f"validate.measurements={tmp_path}/m.csv", "validate.model=llama3_1_8b",
                          "validate.gpu=h100_sxm"],
             "fit": [f"results={tmp_path}"]}.get(task, [])
    with pytest.raises(ConfigError) as err:
        validate(composer(f"task={task}", f"{key}={tmp_path}/file", f"results_dir={tmp_path}/r", *extra))
    assert err.value.field == key and "not a directory" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_clock_lock_without_a_gpu_is_refused(composer, tmp_path):
    with pytest.raises(ConfigError, match="gpu.clocks.mode=.lock.: needs a CUDA device"):
        validate(composer("gpu.clocks.mode=lock", "gpu.clocks.sm_mhz=1410", f"results_dir={tmp_path}"))


def test_slurm_launcher_composes_with_one_gpu_per_job(composer, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = composer("hydra/launcher=slurm_gpu", "sweep=default", "hydra.launcher.partition=gpu",
                   f"results_dir={tmp_path}", hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.partition == "gpu"
    assert str(cfg.hydra.sweep.dir).startswith(str(tmp_path))  # job logs beside the results


def test_protocol_defaults_live_in_the_protocol_alone(composer, tmp_path):
    # conf/config.yaml sets no protocol value: the composed defaults are Protocol's own.
    from bench.measure.protocol import Protocol

    assert composer("sweep=none", f"results_dir={tmp_path}").measure == Protocol()
    assert "measure:" not in (CONF / "config.yaml").read_text()


def test_a_lock_dir_or_state_dir_under_a_regular_file_is_refused(composer, tmp_path):
    (tmp_path / "file").write_text("")
    for key in ("lock.dir", "gpu.state_dir"):
        with pytest.raises(ConfigError) as err:
            validate(composer(f"{key}={tmp_path}/file/sub", f"results_dir={tmp_path}/r"))
        assert err.value.field == key and "not a directory" in str(err.value)


def test_bf16_is_fine_for_torch_cases_on_the_cpu(composer, tmp_path):
    validate(composer("kernel=decode.torch", "offload=split", "device=cpu", "dtype=bfloat16", f"results_dir={tmp_path}"))


@pytest.mark.parametrize("option", ["default", "composition_cpu"])
def test_a_sweep_that_measures_a_layer_measures_its_parts(composer, option, tmp_path):
    # The composition check needs a fit of every part of every measured layer.
    from kernels import Shape

    cfg = composer(f"sweep={option}", f"results_dir={tmp_path}", hydra=True)
    swept = {k for grid in cfg.hydra.sweeper.grids for k in str(grid["kernel"]).split(",")}
    layers = [k for k in swept if REGISTRY.get(k).op == "layer"]
    assert layers
    for layer in layers:
        assert {name for name, _ in REGISTRY.get(layer).parts(Shape(1, 1, 1, 1))} <= swept, layer


def test_the_default_profiles_folder_is_the_shipped_one_where_the_working_directory_has_none(composer, tmp_path,
                                                                                              monkeypatch):
    # A plan run from another folder read its default CPU profile from ./profiles and refused it as
    # missing; task=fit writes to the folder as given.
    from bench.profile.store import PROFILES_DIR

    monkeypatch.chdir(tmp_path)
    assert composer("task=plan").profiles_dir == str(PROFILES_DIR)
    assert composer("task=fit").profiles_dir == "profiles"
    (tmp_path / "profiles").mkdir()
    assert composer("task=plan").profiles_dir == "profiles"  # a folder of one's own is kept


def test_a_plans_solving_budget_is_short_for_a_day_and_long_for_a_year_unless_set(composer, tmp_path):
    # The 24 h bar is 30 s: a day's plan spent 35 s on one flat objective for the plan it had at 10 s.
    from bench.tasks.plan import inputs_of

    base = (f"results_dir={tmp_path}", "task=plan")
    assert inputs_of(composer(*base)).solve_budget_s == 10.0
    assert inputs_of(composer(*base, "plan.hours=8760", "grid.start=2022-01-01")).solve_budget_s == 25.0
    assert inputs_of(composer(*base, "plan.solve_budget_s=20")).solve_budget_s == 20.0
