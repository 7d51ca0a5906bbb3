"""Measured LLM servers in the ML.ENERGY Benchmark v3 leaderboard format: one row per `max_num_seqs`
of one model on one GPU type, all requests queued at once (see `bench/carbon/data/SOURCES.md` for what
each column counts). What a replay needs that the file does not say is in `ValidateConf`, each
assumption a config value with its reason."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import pandas as pd

REQUIRED = ("max_num_seqs", "avg_batch_size", "avg_output_len", "energy_per_token_j", "p90_itl_ms")
OPTIONAL = ("num_gpus", "avg_power_w", "output_tokens_per_s", "median_itl_ms", "model_id", "gpu_model")


@dataclass
class ValidateConf:
    """`validate.*`: the measurements, what to replay them with, and the workload assumptions."""

    measurements: Optional[str] = None  # csv in the ML.ENERGY v3 format (required for task=validate)
    model: Optional[str] = None  # a serving preset (bench.carbon.serving.PRESETS): its key or a Hugging Face id
    gpu: Optional[str] = None  # a GPU type of the catalogue (bench/carbon/data/gpus.csv)
    itl_slo_s: float = 0.05  # p90 inter-token latency SLO for the max-batch choice
    extra_itl_slos_s: List[float] = field(default_factory=lambda: [0.03, 0.1])  # more SLO lines
    # auto: the GPU's committed calibration (or its transfer from one), else the datasheet with measured
    # ceilings; refit: calibrate on this file (in-sample, said so, with a leave-one-out check); none: the
    # plain peak-rate datasheet model (the old baseline).
    calibration: str = "auto"
    # Prompt lengths are not in the file. lm-arena-chat prompts are LMArena conversations with every
    # earlier turn (user and assistant) concatenated: most are one short turn, a minority carry earlier
    # answers. LMSYS-Chat-1M (Zheng et al. 2024) reports 69.5 tokens per user turn and 214.5 per answer;
    # with ~1.3 turns per conversation and the chat template that gives a mean near 250 tokens,
    # heavy-tailed: lognormal with this mean and log-sd.
    prompt_mean_tokens: float = 250.0
    prompt_sigma: float = 1.2
    # Outputs: exponential with the row's avg_output_len (ML.ENERGY's published histograms fall off
    # roughly so), cut at the benchmark's --max-output-tokens 4096.
    max_output_tokens: int = 4096
    max_num_batched_tokens: int = 8192  # vLLM's per-step token budget in those runs
    # vLLM's --max-model-len in those runs (every v3 lm-arena-chat config): prompt + output fit in the
    # smaller of it and the model's own window.
    max_model_len_tokens: int = 20480
    gpu_memory_utilization: float = 0.9  # vLLM's default share of GPU memory (weights, runtime, KV cache)
    # What vLLM's share holds besides weights and KV cache, per GPU. The runtime: vLLM's own profile of
    # Llama-3-8B on one H100 (vllm-project/vllm PR #10511, its sanity check) left 53.29 GiB for the KV cache
    # of 0.9 x the 79.65 GiB nvidia-smi reports: with 14.96 GiB of weights and a 1.26 GiB activation peak,
    # 2.18 GiB went to the runtime (1.79 GiB of non-torch memory, CUDA context and libraries, and the
    # 0.43 GiB the driver reports less to CUDA than to nvidia-smi, 0.9 of it). At tensor parallel 2 its
    # non-torch memory was 3.58 GiB per GPU (communication buffers): 3.97 GiB. The activation peak is
    # estimated from the model (`replay.activation_bytes`). Both are of one H100 profile: the TP-2
    # figure is applied to 4 and 8 GPUs too, and the H100's 0.43 GiB driver gap to other GPU types.
    runtime_reserve_gib: float = 2.18
    runtime_reserve_tp_gib: float = 3.97  # per GPU of a tensor-parallel replica
    # Requests per run; 0: as ML.ENERGY v3's sweep of the row's model_id, gpu_model and num_gpus ran them
    # (`default_requests`; the GPU type's name where the file has no gpu_model).
    num_requests: int = 0
    seed: int = 0
    out_dir: Optional[str] = None  # default: results_dir/validate


class MeasurementsError(ValueError):
    """A measurement file that cannot be used; the message names what is wrong."""


def read(path: str | Path) -> pd.DataFrame:
    """The rows sorted by max_num_seqs; refuses a missing file, missing columns or bad values."""
    p = Path(path)
    if p.is_dir():
        raise MeasurementsError(f"{p} is a directory, not a csv file")
    if not p.is_file():
        raise MeasurementsError(f"no such file {p}")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise MeasurementsError(f"{p} is not a readable csv ({err})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise MeasurementsError(f"{p} lacks column(s) {', '.join(missing)} (needs {', '.join(REQUIRED)})")
    if df.empty:
        raise MeasurementsError(f"{p} has no rows")
    twice = sorted({str(c) for c in df.columns if str(c).rsplit(".", 1)[0] in df.columns and "." in str(c)
                    and str(c).rsplit(".", 1)[1].isdigit()})
    if twice:  # pandas renames a repeated header "x" to "x.1": which one was meant is not known
        raise MeasurementsError(f"{p}: column(s) {', '.join(t.rsplit('.', 1)[0] for t in twice)} appear more than once")
    numeric = df[list(REQUIRED)].apply(pd.to_numeric, errors="coerce")
    bad = [c for c in REQUIRED if not ((numeric[c] > 0) & (numeric[c] < float("inf"))).all()]
    if bad:
        raise MeasurementsError(f"{p}: column(s) {', '.join(bad)} must be positive finite numbers in every row")
    if not (numeric["max_num_seqs"] == numeric["max_num_seqs"].round()).all():
        raise MeasurementsError(f"{p}: column max_num_seqs must be a whole number in every row")
    df = df.copy()
    df[list(REQUIRED)] = numeric
    df["max_num_seqs"] = df["max_num_seqs"].astype(int)
    if "num_gpus" not in df.columns:
        df["num_gpus"] = 1
    gpus = pd.to_numeric(df["num_gpus"], errors="coerce")
    if not ((gpus >= 1) & (gpus < float("inf")) & (gpus == gpus.round())).all():
        raise MeasurementsError(f"{p}: column num_gpus must be a whole number >= 1 in every row")
    df["num_gpus"] = gpus.astype(int)
    for c in ("avg_power_w", "output_tokens_per_s", "median_itl_ms"):  # optional, but numbers where given
        if c in df.columns:
            values = pd.to_numeric(df[c], errors="coerce")
            if (values.isna() & df[c].notna()).any() or (values <= 0).any() or (values == float("inf")).any():
                raise MeasurementsError(f"{p}: column {c} must be positive finite numbers where given")
            df[c] = values
    # What a server cannot have measured: a configuration twice (which row would count?), more requests
    # running on average than it admits (a 1% slack for rounding), a p90 below the median.
    dup = df.duplicated(["max_num_seqs", "num_gpus"], keep=False)
    if dup.any():
        raise MeasurementsError(f"{p}: max_num_seqs {int(df.loc[dup, 'max_num_seqs'].iloc[0])} appears in more than one "
                                "row (with the same num_gpus); one row per configuration")
    over = df["avg_batch_size"] > df["max_num_seqs"] * 1.01
    if over.any():
        row = df[over].iloc[0]
        raise MeasurementsError(f"{p}: avg_batch_size {row['avg_batch_size']:g} is more than max_num_seqs "
                                f"{int(row['max_num_seqs'])} in a row: a server runs at most max_num_seqs requests")
    if "median_itl_ms" in df.columns:
        low = df["p90_itl_ms"] < df["median_itl_ms"] * (1 - 1e-6)
        if low.any():
            row = df[low].iloc[0]
            raise MeasurementsError(f"{p}: p90_itl_ms {row['p90_itl_ms']:g} is below median_itl_ms "
                                    f"{row['median_itl_ms']:g} at max_num_seqs {int(row['max_num_seqs'])}")
    return df.sort_values(["num_gpus", "max_num_seqs"]).reset_index(drop=True)


REPEATS = Path(__file__).resolve().parents[1] / "data" / "mlenergy_v3_request_repeats.csv"
REQUESTS_PER_RUN = 1024  # ML.ENERGY v3's lm-arena-chat `num_requests` (its configs/vllm/lm-arena-chat/benchmark.yaml)


@functools.cache
def _repeats() -> pd.DataFrame:
    t = pd.read_csv(REPEATS)
    t["model_id"] = t["model_id"].str.lower()
    t["gpu_model"] = t["gpu_model"].str.lower()
    return t


def default_requests(max_num_seqs: int, model_id: str | None = None, gpu_model: str | None = None,
                     num_gpus: int = 1, task: str | None = None) -> int:
    """ML.ENERGY v3's request count for a sweep point: 1,024, times the repeats its sweep of that model on
    that GPU type (its name as the leaderboard writes it, e.g. "H100") and count set for that
    max_num_seqs (`data/mlenergy_v3_request_repeats.csv`; once where the point is not listed, as for a
    model or GPU that sweep file does not have). The table is of the lm-arena-chat task: a row of
    another task (its `task` column) gets the default."""
    if isinstance(task, str) and task.strip() and task.strip().lower() != "lm-arena-chat":
        return REQUESTS_PER_RUN
    t = _repeats()
    hit = t[(t.model_id == str(model_id).strip().lower()) & (t.gpu_model == str(gpu_model).strip().lower())
            & (t.num_gpus == int(num_gpus)) & (t.max_num_seqs == int(max_num_seqs))]
    return REQUESTS_PER_RUN * (int(hit.request_repeats.iloc[0]) if len(hit) else 1)
