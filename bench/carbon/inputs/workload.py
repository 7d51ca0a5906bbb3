"""Request traces: arrival time, prompt tokens and output tokens per request.

The default is the Azure LLM inference trace 2023 (conversation, one hour, 19,366 requests;
CC-BY-4.0, "Azure LLM inference trace 2023, Microsoft"), shipped in `data/`. Any trace with those
three columns works (names configurable), read by its suffix: `.csv`, `.jsonl` (JSON lines, one
object per request), `.json` (one array of request objects, or JSON lines) or `.parquet`. Times are datetimes (ISO strings, with or without a
zone; zones are honoured) or numbers in `workload.time_unit` (s, ms or us); arrivals out of order
are sorted and counted. A share of the requests is marked offline (batch work with a deadline,
EcoServe's default 55%), chosen at random with a seed. Rows in messages count data rows from 0.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

DEFAULT_TRACE = Path(__file__).resolve().parents[1] / "data" / "azure_conv_2023.csv"
TIME_UNITS_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}  # seconds per unit of a numeric timestamp
OVER_CONTEXT = ("refuse", "truncate", "drop")
MAX_TOKENS = 2**31 - 1  # a token count past this is no trace's (the longest context windows are ~10 million)
# A trace spanning more than a year is far more likely milliseconds read as seconds than a year of
# requests; the hint names the next finer unit.
MAX_SPAN_S = 366 * 86400.0
EPOCH_MAX_S = 1e11  # seconds after 1970 no trace has (year 5138): a coarser unit's reading of a finer one
FINER_UNIT = {"s": "ms", "ms": "us"}


@dataclass
class WorkloadConf:
    """`workload.*`: the request trace, how to read it, and its offline share."""

    path: Optional[str] = None  # default: the shipped Azure conversation trace; .csv, .jsonl, .json, .parquet
    time_column: str = "TIMESTAMP"
    prompt_column: str = "ContextTokens"
    output_column: str = "GeneratedTokens"
    time_unit: str = "s"  # of numeric timestamps: s | ms | us (datetimes carry their own)
    # Requests whose prompt + output exceed the model's context window: refuse | truncate | drop.
    # truncate by default: the shipped trace has one such request (14,089 tokens; Llama-3 has 8,192).
    over_context: str = "truncate"
    offline_share: float = 0.55  # EcoServe: offline batch work is up to 55% of capacity
    deadline_h: int = 24
    seed: int = 0


class WorkloadError(ValueError):
    """A trace that cannot be used; the message names the column or row."""


@dataclass(frozen=True)
class Workload:
    arrival_s: np.ndarray  # seconds from the first request, sorted
    prompt: np.ndarray
    output: np.ndarray
    offline: np.ndarray  # bool
    label: str  # the file, its size and span, and what was changed on reading (re-sorted, truncated)

    @property
    def duration_s(self) -> float:
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self.arrival_s) else 0.0

    def subset(self, mask: np.ndarray) -> "Workload":
        return Workload(self.arrival_s[mask], self.prompt[mask], self.output[mask], self.offline[mask], self.label)


def from_config(w: WorkloadConf) -> "Workload":
    return load(w.path, w.time_column, w.prompt_column, w.output_column, w.offline_share, w.seed, w.time_unit)


def _read_json_lines(path: Path) -> pd.DataFrame:
    # json per line rather than pd.read_json: its date inference reads a numeric "timestamp" column
    # as epoch times whatever workload.time_unit says, and its errors name no line.
    records = []
    with path.open(encoding="utf-8-sig", errors="replace") as lines:  # (-sig: a byte-order mark is no JSON)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                why = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deep"
                raise WorkloadError(f"trace {path.name}: line {number} is not JSON ({why}); a JSON-lines trace "
                                    f"needs one JSON object per line") from None
            if not isinstance(record, dict):
                raise WorkloadError(f"trace {path.name}: line {number} is a JSON {_json_type(record)}, not an "
                                    f"object; a JSON-lines trace needs one JSON object per line")
            records.append(record)
    return pd.DataFrame.from_records(records)


def _json_type(value) -> str:
    """A parsed JSON value's type as JSON names it."""
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _read_json(path: Path) -> pd.DataFrame:
    """A `.json` trace: one array of request objects (as `json.dump` of a list writes it, on one
    line or many), or JSON lines."""
    content = path.read_text(encoding="utf-8-sig", errors="replace")
    if not content.lstrip().startswith("["):
        return _read_json_lines(path)
    try:
        records = json.loads(content)
    except (json.JSONDecodeError, RecursionError) as err:
        why = f"{err.msg} at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else "nested too deep"
        raise WorkloadError(f"trace {path.name} is not JSON ({why}); a .json trace is one array of request "
                            f"objects or one object per line") from None
    bad = next((i for i, record in enumerate(records) if not isinstance(record, dict)), None)
    if bad is not None:
        raise WorkloadError(f"trace {path.name}: element {bad} of its array is a JSON {_json_type(records[bad])}, "
                            f"not an object (one per request)")
    return pd.DataFrame.from_records(records)


READERS: dict[str, tuple[str, Callable[[Path], pd.DataFrame]]] = {
    ".csv": ("CSV", pd.read_csv),
    ".jsonl": ("JSON lines", _read_json_lines),
    ".json": ("JSON", _read_json),
    ".parquet": ("Parquet", pd.read_parquet),
}


def _read(path: Path) -> pd.DataFrame:
    if path.suffix.lower() not in READERS:
        known = ", ".join(f"{suffix} ({kind})" for suffix, (kind, _) in READERS.items())
        raise WorkloadError(f"workload.path={str(path)!r}: unknown format {path.suffix or '(no suffix)'!r}; "
                            f"readable: {known}")
    kind, reader = READERS[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise WorkloadError(f"trace {path.name} has no requests (the file is empty)")
    try:
        return reader(path)
    except pd.errors.EmptyDataError:
        raise WorkloadError(f"trace {path.name} has no requests (the file is blank)") from None
    except WorkloadError:
        raise
    except (ValueError, OSError) as err:  # pandas' parser errors and pyarrow's are ValueErrors
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise WorkloadError(f"trace {path.name} is not readable as {kind}: {first_line}") from None


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _requests(count: int) -> str:
    return f"{count} request" + ("" if count == 1 else "s")


def _span_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _arrival_s(times: pd.Series, column: str, time_unit: str, name: str) -> np.ndarray:
    """Seconds since the epoch or any fixed origin, in file order."""
    if pd.api.types.is_numeric_dtype(times):
        values = times.to_numpy(float)
        missing = ~np.isfinite(values)
        if missing.any():
            raise WorkloadError(f"trace {name}: missing time in column {column!r} at row {_first(missing)}")
        seconds = values * TIME_UNITS_S[time_unit]
        finer = FINER_UNIT.get(time_unit)
        if float(np.min(np.abs(seconds))) > EPOCH_MAX_S:  # e.g. epoch milliseconds read as seconds
            hint = f"set workload.time_unit={finer}" if finer else "is it in a unit finer than microseconds?"
            raise WorkloadError(f"trace {name}: column {column!r} read in workload.time_unit={time_unit} is "
                                f"{float(np.min(np.abs(seconds))) / (365.25 * 86400):.0f} years or more from 1970; "
                                f"{hint}")
        span_s = float(seconds.max() - seconds.min())
        if span_s > MAX_SPAN_S:
            finer = FINER_UNIT.get(time_unit)
            hint = f"set workload.time_unit={finer}" if finer else f"is {column!r} the arrival time?"
            raise WorkloadError(f"trace {name}: column {column!r} read in workload.time_unit={time_unit} spans "
                                f"{span_s / 86400:.0f} days (more than {MAX_SPAN_S / 86400:.0f}); {hint}")
        return seconds
    # utc=True: offsets may differ within a trace (a daylight-saving change); naive times count as UTC.
    kwargs = {} if pd.api.types.is_datetime64_any_dtype(times) else {"format": "mixed"}
    parsed = pd.to_datetime(times, utc=True, errors="coerce", **kwargs)
    bad = parsed.isna().to_numpy()
    if bad.any():
        numbers = pd.to_numeric(times, errors="coerce")
        text = numbers.isna().to_numpy() & times.notna().to_numpy()
        if numbers.notna().sum() > text.sum():  # mostly numbers and a stray word: name the word
            row = _first(text)
            raise WorkloadError(f"trace {name}: non-numeric time {str(times.iloc[row])!r} in column {column!r} at "
                                f"row {row} (the column's other times are numbers)")
        row = _first(bad)
        what = "missing time" if pd.isna(times.iloc[row]) else f"unparseable time {str(times.iloc[row])!r}"
        raise WorkloadError(f"trace {name}: {what} in column {column!r} at row {row}")
    if not pd.api.types.is_datetime64_any_dtype(times):
        # Numbers beside dates are read as nanoseconds after 1970 (a compact date such as 20231116 is
        # a date): a period of hours would then span decades and drop one kind quietly.
        numbers = pd.to_numeric(times, errors="coerce").notna().to_numpy()
        epoch = numbers & (parsed.dt.year <= 1970).to_numpy()
        if epoch.any() and (~numbers & (parsed.dt.year > 1970).to_numpy()).any():
            row = _first(epoch)
            raise WorkloadError(f"trace {name}: column {column!r} mixes numbers and dates (e.g. "
                                f"{str(times.iloc[row])!r} at row {row}); one kind per column")
    return (parsed - parsed.min()).dt.total_seconds().to_numpy()


def load(path: str | Path | None = None, time_column: str = "TIMESTAMP", prompt_column: str = "ContextTokens",
         output_column: str = "GeneratedTokens", offline_share: float = 0.55, seed: int = 0,
         time_unit: str = "s") -> Workload:
    """A trace from a file, arrivals sorted (stable; the label counts any that were not).

    Args:
        path: a .csv, .jsonl (JSON lines), .json (an array of objects, or JSON lines) or .parquet
            file; None: the shipped Azure trace.
        time_column, prompt_column, output_column: the columns to read.
        offline_share: share of requests marked offline, in [0, 1).
        seed: for choosing the offline requests.
        time_unit: unit of numeric timestamps, one of `TIME_UNITS_S`; datetimes carry their own.
    """
    path = Path(path) if path else DEFAULT_TRACE
    if not path.is_file():
        raise WorkloadError(f"workload.path={str(path)!r} is not a file")
    if not 0.0 <= offline_share < 1.0:
        raise WorkloadError(f"workload.offline_share={offline_share}: must be in [0, 1)")
    if time_unit not in TIME_UNITS_S:
        raise WorkloadError(f"workload.time_unit={time_unit!r}: choose one of {', '.join(TIME_UNITS_S)}")
    df = _read(path)
    if df.empty:
        raise WorkloadError(f"trace {path.name} has no requests")
    missing = [c for c in (time_column, prompt_column, output_column) if c not in df.columns]
    if missing:
        raise WorkloadError(f"trace {path.name} lacks column(s) {missing}; it has {list(df.columns)} "
                            f"(set workload.time_column / prompt_column / output_column)")
    for col in (time_column, prompt_column, output_column):  # (a JSON trace's cells may be arrays or objects)
        nested = df[col].map(lambda v: isinstance(v, (list, dict))).to_numpy()
        if nested.any():
            row = _first(nested)
            raise WorkloadError(f"trace {path.name}: column {col!r} holds a JSON {_json_type(df[col].iloc[row])} at "
                                f"row {row}, not a single value (one request per row or object)")
    seconds = _arrival_s(df[time_column].reset_index(drop=True), time_column, time_unit, path.name)
    tokens = {}
    for col in (prompt_column, output_column):
        flags = (np.ones(len(df), bool) if pd.api.types.is_bool_dtype(df[col]) else
                 df[col].map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy() if df[col].dtype == object else None)
        if flags is not None and flags.any():
            row = _first(flags)
            raise WorkloadError(f"trace {path.name}: column {col!r} holds true/false at row {row}, not a token count")
        values = pd.to_numeric(df[col], errors="coerce")
        text = (values.isna() & df[col].notna()).to_numpy()
        if text.any():
            row = _first(text)
            raise WorkloadError(f"trace {path.name}: column {col!r} has text {str(df[col].iloc[row])!r} at row {row}, "
                                "not a token count")
        if values.isna().any() or (values < 0).any():
            row = _first((values.isna() | (values < 0)).to_numpy())
            raise WorkloadError(f"trace {path.name}: column {col!r} has a negative or missing token count at row {row}")
        fraction = (values != values.round()).to_numpy() & np.isfinite(values.to_numpy(float))
        if fraction.any():
            row = _first(fraction)
            raise WorkloadError(f"trace {path.name}: column {col!r} has {values.iloc[row]:g} tokens at row {row}, "
                                "not a whole number")
        # Past any context window by far (inf cast to an integer is garbage, not an error: it passed
        # the context check and crashed the compiled simulation).
        if (values > MAX_TOKENS).any():
            row = _first((values > MAX_TOKENS).to_numpy())
            raise WorkloadError(f"trace {path.name}: column {col!r} has a token count of {values.iloc[row]:g} at row "
                                f"{row}, more than {MAX_TOKENS:,} (no model reads that many)")
        tokens[col] = values.to_numpy(int)
    # Sorted rather than refused: exports merged from several servers interleave, and the order
    # within equal times is kept.
    resorted = int((seconds < np.maximum.accumulate(seconds)).sum())
    order = np.argsort(seconds, kind="stable")
    seconds = seconds[order]
    rng = np.random.default_rng(seed)
    offline = rng.random(len(df)) < offline_share
    notes = [f"{_requests(len(df))} over {_span_text(float(seconds[-1] - seconds[0]))}", f"{offline_share:.0%} offline"]
    if resorted:
        notes.append(f"{resorted} out-of-order arrivals sorted")
    # A request produces at least one token (its first, with the prefill); a prompt has at least one.
    for col, what in ((prompt_column, "prompts"), (output_column, "outputs")):
        zero = int((tokens[col] == 0).sum())
        if zero:
            notes.append(f"{zero} {what} of 0 tokens counted as 1")
    return Workload(seconds - seconds[0], np.maximum(tokens[prompt_column][order], 1),
                    np.maximum(tokens[output_column][order], 1), offline, f"{path.name} ({', '.join(notes)})")


def fit_to_context(w: Workload, context_tokens: int, policy: str) -> Workload:
    """The requests whose prompt + output exceed the model's context window, refused, truncated or
    dropped; the label says how many and what was done.

    Args:
        w: the workload.
        context_tokens: the model's context window (prompt + output), in tokens.
        policy: `refuse` (WorkloadError), `truncate` (the prompt is cut, keeping at least one
            token, so prompt + output fit; an output alone over the window is cut to the window
            less one) or `drop` (the requests are removed).
    """
    if policy not in OVER_CONTEXT:
        raise WorkloadError(f"workload.over_context={policy!r}: choose one of {', '.join(OVER_CONTEXT)}")
    total = w.prompt + w.output
    over = total > context_tokens
    count = int(over.sum())
    if not count:
        return w
    if policy == "refuse":
        verb = "exceeds" if count == 1 else "exceed"
        raise WorkloadError(f"{count} of {_requests(len(total))} {verb} the model's {context_tokens}-token context "
                            f"(prompt + output; the largest: {int(total.max())} tokens); set "
                            f"workload.over_context=truncate or drop")
    note = f"{_requests(count)} over the {context_tokens}-token context"
    if policy == "drop":
        if count == len(total):
            raise WorkloadError(f"all {_requests(count)} exceed the model's {context_tokens}-token context "
                                f"(prompt + output); workload.over_context=drop leaves nothing to plan for")
        kept = w.subset(~over)
        return Workload(kept.arrival_s - kept.arrival_s[0], kept.prompt, kept.output, kept.offline,
                        f"{w.label}; {note} dropped")
    output = np.minimum(w.output, context_tokens - 1)
    # context - output >= 1, so a cut prompt keeps at least one token.
    prompt = np.minimum(w.prompt, context_tokens - output)
    return Workload(w.arrival_s, prompt, output, w.offline, f"{w.label}; {note} truncated")
