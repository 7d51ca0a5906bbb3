"""Energy profiles built from measured points: gathered, filtered by quality, fitted (`curves`),
tabulated with measured and fitted values side by side. `store.py` writes and loads them."""
from __future__ import annotations

import glob
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common.files import read_json_object
from bench.profile import compose, curves
from bench.profile.fit import Fit
from kernels import REGISTRY
GOOD_QUALITY = ("ok",)
LEGACY_CV_THRESHOLD = 0.02  # for points measured before the quality flag existed
SHAPE_COLS = ["batch_size", "heads", "kv_heads", "head_dim", "seq_len", "context_len", "causal", "page_size",
              "offload_fraction", "offload_threads", "offload_chunks", "hidden", "ffn"]


class ProfileError(ValueError):
    """No usable points, or a profile that does not exist; the message says what to do."""


def gather(pattern: str) -> pd.DataFrame:
    """Every point under the directories (or points.csv files) matching `pattern`, one row per key."""
    rows: list[dict[str, Any]] = []
    unreadable: list[str] = []
    matches = sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
    for match in matches:
        path = Path(match)
        files = sorted(path.glob("**/points/*.json")) if path.is_dir() else []
        for f in files:
            row = read_point(f)
            if row is None:
                unreadable.append(str(f))
            else:
                rows.append(row)
        csvs = [path] if path.suffix == ".csv" else (sorted(path.glob("**/*points.csv")) if path.is_dir() and not files else [])
        for csv in csvs:
            try:
                table = pd.read_csv(csv, dtype={"key": str})  # (hex keys of digits alone are keys, not numbers)
            except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
                unreadable.append(str(csv))
                continue
            for i, row in enumerate(table.to_dict("records")):
                row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                if usable_point(row):
                    rows.append(row)
                else:
                    unreadable.append(f"{csv} row {i + 2}")  # (its line: after the header)
    if not rows:
        bad = f"; {len(unreadable)} unreadable or unusable points (files or csv rows), e.g. {unreadable[0]}" if unreadable else ""
        raise ProfileError(f"no measured points under {pattern!r} (expected <dir>/points/*.json or a points.csv){bad}")
    frame = pd.DataFrame(rows).drop_duplicates("key", keep="last").reset_index(drop=True)
    frame.attrs["unreadable_points"] = unreadable  # skipped and counted, never a traceback
    return frame


# A point's figures the profile computes with: numbers (or empty) wherever a point has them.
NUMERIC_FIELDS = ("batch_size", "seq_len", "context_len", "flops_per_call", "min_bytes_per_call", "tokens_per_call",
                  "time_per_call_s", "gpu_energy_per_call_j", "energy_per_call_j", "host_energy_per_call_j",
                  "energy_per_call_j_incl_model", "measured_energy_per_call_j", "clocks_sm_mhz_requested")


def usable_point(row: dict[str, Any]) -> bool:
    """Whether a measured row can enter a profile: a key and a kernel named, a positive finite time per
    call, and numbers (or nothing) where its figures are (a file edited by hand, or of another tool,
    is skipped and counted, not a traceback)."""
    if not isinstance(row.get("key"), str) or not isinstance(row.get("kernel"), str):
        return False
    for name in NUMERIC_FIELDS:
        value = row.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return False
    t = row.get("time_per_call_s")
    return t is not None and math.isfinite(t) and t > 0


def read_point(path: Path) -> dict[str, Any] | None:
    """One point file, or None if it is not a usable point (unreadable, not a JSON object, no key or
    kernel, a figure that is not a number: `usable_point`)."""
    row = read_json_object(path)
    return row if row is not None and usable_point(row) else None


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
    df["offload_mode"] = offload_modes(df)
    df["op"] = ops(df)
    df["offloaded"] = df["offload_mode"] != "none"
    gpu = df["device"] == "cuda"
    # Points measured before totals were split by method carry one all-domain total.
    _with_legacy(df, "energy_per_call_j_incl_model", "energy_per_call_j")
    _with_legacy(df, "energy_incl_model_method", "energy_method")
    if "host_energy_per_call_j" not in df:
        df["host_energy_per_call_j"] = np.nan
    legacy_host = df["energy_per_call_j_incl_model"] - np.where(gpu, df["gpu_energy_per_call_j"].fillna(0), 0)
    df["host_energy_per_call_j"] = df["host_energy_per_call_j"].fillna(pd.Series(legacy_host, index=df.index))
    _with_legacy(df, "host_energy_method", "energy_method")
    # On a CPU-only machine the host is the device: its energy is both.
    df["device_energy_per_call_j"] = np.where(gpu, df["gpu_energy_per_call_j"], df["host_energy_per_call_j"])
    df["device_energy_method"] = np.where(gpu, "gpu=" + df["gpu_method"].astype(str), df["host_energy_method"])
    idle_cols = [c for c in df.columns if c.endswith("_idle_power_w") and c != "gpu_idle_power_w"]
    host_idle = df[idle_cols].sum(axis=1, min_count=1) if idle_cols else np.nan
    df["device_idle_power_w"] = np.where(gpu, df.get("gpu_idle_power_w", np.nan), host_idle)
    df["length"] = np.where(df["phase"] == "prefill", df["seq_len"], df["context_len"])
    df["clock_mhz"] = df["clocks_sm_mhz_requested"]
    df["shape_id"] = df[SHAPE_COLS].apply(lambda r: "|".join(map(str, r)), axis=1)
    df["batch_group"] = df.apply(_batch_group, axis=1)
    df["date"] = df["created_utc"].astype(str).str[:10]
    return df


def _with_legacy(df: pd.DataFrame, column: str, legacy: str) -> None:
    """`column`, filled where missing from the column older points carry instead."""
    if column not in df:
        df[column] = np.nan
    if legacy in df:
        df[column] = df[column].where(df[column].notna(), df[legacy])


def offload_modes(df: pd.DataFrame) -> pd.Series:
    """Each point's CPU-offload mode: the trait column rows carry, or, for points measured before
    it existed, the trait of their case in the registry (a case no longer registered: `none`)."""
    def registered(kernel: Any) -> str:
        return REGISTRY.get(kernel).offload if kernel in REGISTRY else "none"

    from_registry = df["kernel"].map(registered)
    if "offload_mode" not in df:
        return from_registry
    return df["offload_mode"].where(df["offload_mode"].notna(), from_registry).astype(str)


def ops(df: pd.DataFrame) -> pd.Series:
    """What each point's case computes (`attention`, `linear.<projection>`, `layer`): the trait
    column rows carry, or, for points measured before it existed, the registry's (`attention`
    for a case no longer registered: every case was attention then)."""
    from_registry = df["kernel"].map(lambda k: REGISTRY.get(k).op if k in REGISTRY else "attention")
    if "op" not in df:
        return from_registry
    return df["op"].where(df["op"].notna(), from_registry).astype(str)


def _batch_group(row: pd.Series) -> str:
    """Everything but the batch size, readably: the points of one batching curve."""
    if row["op"] != "attention":  # a linear or layer case: its token count and widths
        length = f" N={row['seq_len']:g}" if row["phase"] == "prefill" else (
            f" L={row['context_len']:g}" if not pd.isna(row["context_len"]) else "")
        return f"{row['kernel']}{length} H={row['hidden']:g} F={row['ffn']:g}"
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
    composition: pd.DataFrame | None = None  # each measured layer point against its composed parts

    def op_of(self, kernel: str) -> str:
        """What a case of this profile computes (`attention` for tables written before ops existed)."""
        if "op" in self.table:
            rows = self.table.loc[self.table["kernel"] == kernel, "op"].dropna()
            if len(rows):
                return str(rows.iloc[0])
        return REGISTRY.get(kernel).op if kernel in REGISTRY else "attention"

    def energy_roofline(self) -> Fit | None:
        return Fit.from_dict(self.fits.get("energy_roofline"))

    def time_roofline(self, kernel: str) -> Fit | None:
        return Fit.from_dict(self.fits.get("time_roofline", {}).get(kernel))

    def phase_of(self, kernel: str) -> str | None:
        """The phase of a case in this profile, from its rows (fits are keyed by case name)."""
        rows = self.table.loc[self.table["kernel"] == kernel, "phase"]
        return str(rows.iloc[0]) if len(rows) else None

    def fits_dict(self) -> dict[str, Any]:
        """The fits as plain data (every `Fit` through `to_dict`), as the JSON file holds them."""
        def conv(x: Any) -> Any:
            if isinstance(x, Fit):
                return x.to_dict()
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            return x

        return conv(self.fits)


def build(points: pd.DataFrame, name: str, source: str = "") -> Profile:
    """Fit every curve the points support; what cannot be fitted is listed with the reason."""
    df, dropped = select(prepare(points))
    if df.empty:
        raise ProfileError(f"no point of good quality to fit (dropped: {dropped})")
    skipped: list[str] = []
    fits: dict[str, Any] = {}
    plain = df[~df["offloaded"]]
    roofline_points = plain[plain["clock_mhz"].isna()]  # one device, default clocks
    fits["time_roofline"], s = curves.fit_groups(roofline_points, ["kernel"], curves.time_roofline, min_points=4)
    skipped += s
    # Energy per call of each case on its own (the same form as the roofline across cases).
    fits["energy_per_case"], s = curves.fit_groups(roofline_points, ["kernel"], curves.energy_roofline, min_points=4)
    skipped += s
    # The device-wide energy roofline (the planner's energy model) is attention's, as it always was.
    try:
        fits["energy_roofline"] = curves.energy_roofline(roofline_points[roofline_points["op"] == "attention"])
    except curves.FitError as err:
        skipped.append(f"energy_roofline: {err}")
    # One roofline per projection over both phases' points: the same call at few tokens (decode,
    # bandwidth-bound) and many (prefill, compute-bound) pins both its bandwidth and its rate.
    # Kept only where there are such points, so a profile of attention alone is as it was.
    linear = roofline_points[roofline_points["op"].str.startswith("linear.")]
    if len(linear):
        fits["linear_time_roofline"], s = curves.fit_groups(linear, ["op"], curves.time_roofline, min_points=4)
        skipped += s
        fits["linear_energy"], s = curves.fit_groups(linear, ["op"], curves.energy_roofline, min_points=4)
        skipped += s
    overheads, composition, s = compose.check(roofline_points, fits, name)
    if overheads:
        fits["layer_overhead"] = overheads
    skipped += s
    fits["batching"], s = curves.fit_groups(plain[plain["clock_mhz"].isna()], ["batch_group"], curves.batching,
                                            min_points=3)
    skipped += s
    freq = df[df["clock_mhz"].notna()]
    fits["frequency"], s = curves.fit_groups(freq, ["kernel", "shape_id"], curves.frequency, min_points=4)
    skipped += s
    offload = df[df["offloaded"]]
    fits["offload_host"], s = curves.fit_groups(offload, ["batch_group"], curves.offload_host, min_points=3)
    skipped += s
    table = _table(df, fits, name)
    meta = {
        "name": name, "source": source, "points_used": int(len(df)), "points_dropped": dropped,
        "device_names": sorted(df["env_device_name"].dropna().astype(str).unique().tolist())
        if "env_device_name" in df else [],
        "dates": sorted(df["date"].unique().tolist()),
        "energy_methods": sorted(df["device_energy_method"].astype(str).unique().tolist()),
        "host_energy_methods": sorted(df["energy_incl_model_method"].astype(str).unique().tolist()),
        "software": ", ".join(f"{c.removeprefix('env_').removesuffix('_version')} "
                              f"{'/'.join(sorted(df[c].dropna().astype(str).unique()))}"
                              for c in sorted(df.columns) if c.startswith("env_") and c.endswith("_version")
                              and df[c].notna().any()),
        "clocks": "observed (default)" if df["clock_mhz"].isna().all() else "includes locked clocks",
        "host_logical_cores": sorted({int(c) for c in df.get("env_cpu_logical_cores", pd.Series(dtype=float)).dropna()}),
        "torch_threads": sorted({int(c) for c in df.get("env_torch_threads", pd.Series(dtype=float)).dropna()}),
        "skipped_fits": skipped,
    }
    if points.attrs.get("unreadable_points"):
        meta["points_unreadable"] = list(points.attrs["unreadable_points"])
    if not composition.empty:
        meta["composition"] = compose.summary(composition).to_dict("records")
    return Profile(name, table, fits, meta, composition)


def _table(df: pd.DataFrame, fits: dict[str, Any], name: str) -> pd.DataFrame:
    out = df[["kernel", "phase", "impl", "op", "device", "dtype"] + SHAPE_COLS + [
        "length", "clock_mhz", "gpu_sm_mhz_mean", "flops_per_call", "min_bytes_per_call", "tokens_per_call",
        "time_per_call_s", "device_energy_per_call_j", "device_idle_power_w", "host_energy_per_call_j",
        "energy_per_call_j_incl_model", "device_energy_method", "energy_incl_model_method", "quality", "quality_source", "date", "shape_id", "key"]].copy()
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
    # The energy roofline is fitted on device-only attention kernels at default clocks: no prediction elsewhere.
    outside = df["offloaded"].to_numpy() | out["clock_mhz"].notna() | (df["op"] != "attention").to_numpy()
    out.loc[outside, "device_energy_per_call_j_fit"] = np.nan
    out["setting"] = df["batch_group"].str.extract(r"d=\S+ ?(.*)$")[0].fillna("").values
    clocked = out["clock_mhz"].notna()
    if clocked.any():
        out.loc[clocked, "setting"] = out.loc[clocked, "setting"] + [f" sm={f:g}MHz" for f in out.loc[clocked, "clock_mhz"]]
    out["device_energy_per_token_j"] = out["device_energy_per_call_j"] / out["tokens_per_call"]
    out["host_energy_per_token_j"] = out["host_energy_per_call_j"] / out["tokens_per_call"]
    return out.sort_values(["phase", "kernel", "length", "batch_size"]).reset_index(drop=True)


