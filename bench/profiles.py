"""Energy profiles: measured points gathered, filtered by quality, fitted, and written as
`<name>.csv` (one row per case and shape, measured and fitted values), `<name>.json` (fit
coefficients, intervals, errors, what was dropped), `<name>.md` (tables) and PNG plots.
`load(name)` reads a shipped profile back for the carbon planner.
"""
from __future__ import annotations

import glob
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import curves
from bench.fit import Fit
from bench.results import atomic_write_text

PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
GOOD_QUALITY = ("ok",)
LEGACY_CV_THRESHOLD = 0.02  # for points measured before the quality flag existed
SHAPE_COLS = ["batch_size", "heads", "kv_heads", "head_dim", "seq_len", "context_len", "causal", "page_size",
              "offload_fraction", "offload_threads", "offload_chunks"]


class ProfileError(ValueError):
    """No usable points, or a profile that does not exist; the message says what to do."""


def gather(pattern: str) -> pd.DataFrame:
    """Every point under the directories (or points.csv files) matching `pattern`, one row per key."""
    rows = []
    matches = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
    for match in matches:
        path = Path(match)
        files = sorted(path.glob("**/points/*.json")) if path.is_dir() else []
        rows += [json.loads(f.read_text()) for f in files]
        csvs = [path] if path.suffix == ".csv" else (sorted(path.glob("**/*points.csv")) if path.is_dir() and not files else [])
        for csv in csvs:
            rows += pd.read_csv(csv).to_dict("records")
    if not rows:
        raise ProfileError(f"no measured points under {pattern!r} (expected <dir>/points/*.json or a points.csv)")
    return pd.DataFrame(rows).drop_duplicates("key", keep="last").reset_index(drop=True)


def _legacy_quality(row: pd.Series) -> str:
    cvs = [row.get("time_per_call_s_cv"), row.get("energy_per_call_j_cv")]
    noisy = any(isinstance(c, (int, float)) and not math.isnan(c) and c > LEGACY_CV_THRESHOLD for c in cvs)
    return "noisy" if noisy else "ok"


def prepare(points: pd.DataFrame) -> pd.DataFrame:
    """Derived columns the curves use; points without a quality flag (measured before it existed)
    get one from their CVs, marked in `quality_source`."""
    df = points.copy()
    if "quality" not in df:
        df["quality"] = None
    df["quality"] = df["quality"].astype(object)
    legacy = df["quality"].isna()
    df["quality_source"] = np.where(legacy, f"derived: CV > {LEGACY_CV_THRESHOLD:g}", "measured")
    if legacy.any():
        df.loc[legacy, "quality"] = df[legacy].apply(_legacy_quality, axis=1)
    for col in SHAPE_COLS + ["gpu_energy_per_call_j", "gpu_method", "clocks_sm_mhz_requested", "gpu_sm_mhz_mean"]:
        if col not in df:
            df[col] = np.nan
    gpu = df["device"] == "cuda"
    df["device_energy_per_call_j"] = np.where(gpu, df["gpu_energy_per_call_j"], df["energy_per_call_j"])
    df["device_energy_method"] = np.where(gpu, "gpu=" + df["gpu_method"].astype(str), df["energy_method"])
    idle_cols = [c for c in df.columns if c.endswith("_idle_power_w") and c != "gpu_idle_power_w"]
    host_idle = df[idle_cols].sum(axis=1, min_count=1) if idle_cols else np.nan
    df["device_idle_power_w"] = np.where(gpu, df.get("gpu_idle_power_w", np.nan), host_idle)
    # On a CPU-only machine the host is the device: its energy is both.
    df["host_energy_per_call_j"] = df["energy_per_call_j"] - np.where(gpu, df["gpu_energy_per_call_j"].fillna(0), 0)
    df["length"] = np.where(df["phase"] == "prefill", df["seq_len"], df["context_len"])
    df["clock_mhz"] = df["clocks_sm_mhz_requested"]
    df["shape_id"] = df[SHAPE_COLS].apply(lambda r: "|".join(map(str, r)), axis=1)
    df["batch_group"] = df.apply(_batch_group, axis=1)
    df["date"] = df["created_utc"].astype(str).str[:10]
    return df


def _batch_group(row: pd.Series) -> str:
    """Everything but the batch size, readably: the points of one batching curve."""
    length = f"{'N' if row['phase'] == 'prefill' else 'L'}={row['length']:g}"
    text = f"{row['kernel']} {length} h={row['heads']:g}/{row['kv_heads']:g} d={row['head_dim']:g}"
    for col, label in (("offload_fraction", "f"), ("offload_threads", "threads"), ("offload_chunks", "chunks")):
        if not pd.isna(row[col]):
            text += f" {label}={row[col]:g}"
    return text


def select(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep points of good quality; count the dropped ones by reason."""
    bad = ~df["quality"].isin(GOOD_QUALITY)
    dropped = df.loc[bad, "quality"].value_counts().to_dict()
    return df[~bad].copy(), {str(k): int(v) for k, v in dropped.items()}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


@dataclass
class Profile:
    name: str
    table: pd.DataFrame
    fits: dict[str, Any]
    meta: dict[str, Any]

    def energy_roofline(self) -> Fit | None:
        return _fit_from_dict(self.fits.get("energy_roofline"))

    def time_roofline(self, kernel: str) -> Fit | None:
        return _fit_from_dict(self.fits.get("time_roofline", {}).get(kernel))


def _fit_from_dict(d: Fit | dict[str, Any] | None) -> Fit | None:
    if not d or isinstance(d, Fit):
        return d or None
    keys = {k: d[k] for k in ("model", "formula", "params", "n_points", "n_groups", "r2", "cv_rel_error_rms",
                              "cv_rel_error_max", "extra")}
    return Fit(ci95={k: tuple(v) for k, v in d["ci95"].items()}, **keys)


def _fits_dict(fits: dict[str, Any]) -> dict[str, Any]:
    def conv(x: Any) -> Any:
        if isinstance(x, Fit):
            return x.to_dict()
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x

    return conv(fits)


def build(points: pd.DataFrame, name: str, source: str = "") -> Profile:
    """Fit every curve the points support; what cannot be fitted is listed with the reason."""
    df, dropped = select(prepare(points))
    if df.empty:
        raise ProfileError(f"no point of good quality to fit (dropped: {dropped})")
    skipped: list[str] = []
    fits: dict[str, Any] = {}
    plain = df[~df["impl"].astype(str).str.startswith("offload")]
    roofline_points = plain[plain["clock_mhz"].isna()]  # one device, default clocks
    fits["time_roofline"], s = curves.fit_groups(roofline_points, ["kernel"], curves.time_roofline, min_points=4)
    skipped += s
    # Energy per call of each case on its own (the same form as the roofline across cases).
    fits["energy_per_case"], s = curves.fit_groups(roofline_points, ["kernel"], curves.energy_roofline, min_points=4)
    skipped += s
    try:
        fits["energy_roofline"] = curves.energy_roofline(roofline_points)
    except curves.FitError as err:
        skipped.append(f"energy_roofline: {err}")
    fits["batching"], s = curves.fit_groups(plain[plain["clock_mhz"].isna()], ["batch_group"], curves.batching,
                                            min_points=3)
    skipped += s
    freq = df[df["clock_mhz"].notna()]
    fits["frequency"], s = curves.fit_groups(freq, ["kernel", "shape_id"], curves.frequency, min_points=4)
    skipped += s
    offload = df[df["impl"].astype(str).str.startswith("offload")]
    fits["offload_host"], s = curves.fit_groups(offload, ["batch_group"], curves.offload_host, min_points=3)
    skipped += s
    table = _table(df, fits, name)
    meta = {
        "name": name, "source": source, "points_used": int(len(df)), "points_dropped": dropped,
        "device_names": sorted(df["env_device_name"].dropna().astype(str).unique().tolist())
        if "env_device_name" in df else [],
        "dates": sorted(df["date"].unique().tolist()),
        "energy_methods": sorted(df["device_energy_method"].astype(str).unique().tolist()),
        "host_energy_methods": sorted(df["energy_method"].astype(str).unique().tolist()),
        "clocks": "observed (default)" if df["clock_mhz"].isna().all() else "includes locked clocks",
        "host_logical_cores": sorted({int(c) for c in df.get("env_cpu_logical_cores", pd.Series(dtype=float)).dropna()}),
        "torch_threads": sorted({int(c) for c in df.get("env_torch_threads", pd.Series(dtype=float)).dropna()}),
        "skipped_fits": skipped,
    }
    return Profile(name, table, fits, meta)


def _table(df: pd.DataFrame, fits: dict[str, Any], name: str) -> pd.DataFrame:
    out = df[["kernel", "phase", "impl", "device", "dtype"] + SHAPE_COLS + [
        "length", "clock_mhz", "gpu_sm_mhz_mean", "flops_per_call", "min_bytes_per_call", "tokens_per_call",
        "time_per_call_s", "device_energy_per_call_j", "device_idle_power_w", "host_energy_per_call_j", "energy_per_call_j",
        "device_energy_method", "energy_method", "quality", "quality_source", "date", "shape_id", "key"]].copy()
    out.insert(0, "hardware", name)
    if "env_device_name" in df:
        out.insert(1, "device_name", df["env_device_name"].values)
    out["time_per_call_s_fit"] = np.nan
    for kernel, fit in fits.get("time_roofline", {}).items():
        rows = out["kernel"] == kernel
        out.loc[rows, "time_per_call_s_fit"] = curves.predict_time_s(fit, out.loc[rows, "flops_per_call"],
                                                                     out.loc[rows, "min_bytes_per_call"])
    roof = fits.get("energy_roofline")
    out["device_energy_per_call_j_fit"] = (curves.predict_energy_j(roof, out["flops_per_call"], out["min_bytes_per_call"],
                                                                   out["time_per_call_s"]) if roof else np.nan)
    # The energy roofline is fitted on device-only kernels at default clocks: no prediction elsewhere.
    outside = out["impl"].astype(str).str.startswith("offload") | out["clock_mhz"].notna()
    out.loc[outside, "device_energy_per_call_j_fit"] = np.nan
    out["setting"] = df["batch_group"].str.extract(r"d=\S+ ?(.*)$")[0].fillna("").values
    clocked = out["clock_mhz"].notna()
    if clocked.any():
        out.loc[clocked, "setting"] = out.loc[clocked, "setting"] + [f" sm={f:g}MHz" for f in out.loc[clocked, "clock_mhz"]]
    out["device_energy_per_token_j"] = out["device_energy_per_call_j"] / out["tokens_per_call"]
    out["host_energy_per_token_j"] = out["host_energy_per_call_j"] / out["tokens_per_call"]
    return out.sort_values(["phase", "kernel", "length", "batch_size"]).reset_index(drop=True)


def write(profile: Profile, out_dir: Path | str) -> list[Path]:
    """Write `<name>.csv|.json|.md` and the plots; returns the paths."""
    from bench import plots, report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = out / profile.name
    atomic_write_text(base.with_suffix(".csv"), profile.table.to_csv(index=False))
    atomic_write_text(base.with_suffix(".json"), json.dumps({"meta": profile.meta, "fits": _fits_dict(profile.fits)},
                                                            indent=1, default=_json_default) + "\n")
    pngs = plots.render(profile, out)
    atomic_write_text(base.with_suffix(".md"), report.markdown(profile, [p.name for p in pngs]))
    return [base.with_suffix(s) for s in (".csv", ".json", ".md")] + pngs


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def for_device(match: str, root: Path | str = PROFILES_DIR) -> "Profile | None":
    """The newest measured profile whose device name contains `match` (e.g. "H100"), if any."""
    found = []
    for name in available(root):
        meta = json.loads((Path(root) / f"{name}.json").read_text())["meta"]
        pattern = re.compile(rf"\b{re.escape(match)}\b", re.IGNORECASE)  # L4 must not match L40S
        if any(pattern.search(str(d)) for d in meta.get("device_names", [])):
            found.append((max(meta.get("dates") or [""]), name))
    return load(max(found)[1], root) if found else None


def available(root: Path | str = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(root).glob("*.json"))


def load(name: str, root: Path | str = PROFILES_DIR) -> Profile:
    """A written profile by name (`profiles/<name>.csv` + `.json`)."""
    base = Path(root) / name
    if not base.with_suffix(".json").exists():
        raise ProfileError(f"no profile {name!r} in {root}; available: {available(root) or 'none'}. "
                           f"Measure one (python -m bench -m sweep=default) and fit it (python -m bench task=fit)")
    data = json.loads(base.with_suffix(".json").read_text())
    table = pd.read_csv(base.with_suffix(".csv"))
    return Profile(name, table, data["fits"], data["meta"])
