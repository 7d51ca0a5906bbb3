"""Request traces: the default trace and its offline share, every format and time unit, bad traces
refused in one message, and requests longer than the model's context refused, truncated or dropped."""
import json

import numpy as np
import pandas as pd
import pytest

from bench.carbon import serving
from bench.carbon.inputs import workload

HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def write_trace(tmp_path, rows, header=HEADER, name="trace.csv"):
    path = tmp_path / name
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def write_jsonl(tmp_path, records, name="trace.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_default_trace_and_offline_share():
    w = workload.load()
    assert len(w.arrival_s) == 19366 and w.duration_s < 3600
    assert int(np.median(w.prompt)) == 1020 and int(np.median(w.output)) == 129  # as SOURCES.md states
    assert abs(w.offline.mean() - 0.55) < 0.02
    assert w.label == "azure_conv_2023.csv (19366 requests over 58.4 min, 55% offline)"


def test_default_trace_has_one_request_over_the_default_models_context():
    # Why workload.over_context defaults to truncate: refuse would stop the shipped default plan.
    w = workload.load()
    context_tokens = serving.PRESETS["llama3_8b"].context_tokens
    with pytest.raises(workload.WorkloadError, match=r"^1 of 19366 requests exceeds .* 8192-token .*14089 tokens"):
        workload.fit_to_context(w, context_tokens, "refuse")
    fitted = workload.fit_to_context(w, context_tokens, workload.WorkloadConf().over_context)
    assert (fitted.prompt + fitted.output).max() == 8192
    assert fitted.label.endswith("; 1 request over the 8192-token context truncated")
    assert workload.fit_to_context(w, serving.PRESETS["qwen3_8b"].context_tokens, "refuse") is w  # 32k: all fit


def test_every_format_reads_the_same_trace(tmp_path):
    # Millisecond timestamps over 40 hours, one file per format.
    ms = [0, 250, 1000, 144_000_000]
    frame = pd.DataFrame({"TIMESTAMP": ms, "ContextTokens": [10, 20, 30, 40], "GeneratedTokens": [1, 2, 3, 4]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    write_jsonl(tmp_path, frame.to_dict("records"), "t.jsonl")
    write_jsonl(tmp_path, frame.to_dict("records"), "t.JSON")
    # One array, over many lines, after a byte-order mark (as some editors save it).
    (tmp_path / "t.json").write_text(json.dumps(frame.to_dict("records"), indent=1), encoding="utf-8-sig")
    for name in ("t.csv", "t.parquet", "t.jsonl", "t.JSON", "t.json"):
        w = workload.load(tmp_path / name, time_unit="ms")
        assert w.arrival_s.tolist() == [0.0, 0.25, 1.0, 144_000.0], name
        assert w.prompt.tolist() == [10, 20, 30, 40] and w.output.tolist() == [1, 2, 3, 4]
        assert "4 requests over 40.0 h" in w.label


def test_numeric_times_take_their_unit_and_datetimes_their_zone(tmp_path):
    path = write_trace(tmp_path, ["1700000000000000,10,5", "1700000001500000,10,5"])  # epoch microseconds
    assert workload.load(path, time_unit="us").arrival_s.tolist() == [0.0, 1.5]
    # Across the 2024 spring-forward in Paris two minutes apart; a naive time counts as UTC.
    times = ["2024-03-31T01:59:00+01:00", "2024-03-31T03:01:00+02:00", "2024-03-31 01:02:00"]
    path = write_trace(tmp_path, [f"{t},10,5" for t in times], name="zones.csv")
    assert workload.load(path).arrival_s.tolist() == [0.0, 120.0, 180.0]
    frame = pd.DataFrame({"t": times, "p": [1, 2, 3], "o": [1, 1, 1]})
    frame.to_parquet(tmp_path / "zones.parquet")
    assert workload.load(tmp_path / "zones.parquet", "t", "p", "o").arrival_s.tolist() == [0.0, 120.0, 180.0]
    frame["t"] = pd.to_datetime(frame["t"], utc=True, format="mixed").dt.tz_convert("Europe/Paris")  # a datetime column
    frame.to_parquet(tmp_path / "typed.parquet")
    assert workload.load(tmp_path / "typed.parquet", "t", "p", "o").arrival_s.tolist() == [0.0, 120.0, 180.0]


def test_a_span_over_a_year_suggests_a_finer_unit(tmp_path):
    path = write_trace(tmp_path, ["0,10,5", "3600000,10,5", "40000000,10,5"])  # 11 hours in ms
    with pytest.raises(workload.WorkloadError, match=r"time_unit=s spans 463 days .* set workload.time_unit=ms"):
        workload.load(path)
    assert workload.load(path, time_unit="ms").duration_s == 40000.0
    with pytest.raises(workload.WorkloadError, match=r"workload.time_unit='h': choose one of s, ms, us"):
        workload.load(path, time_unit="h")


def test_unsorted_arrivals_are_sorted_stably_and_counted(tmp_path):
    path = write_trace(tmp_path, ["5,10,1", "1,20,2", "5,30,3", "3,40,4", "9,50,5"])
    w = workload.load(path, offline_share=0.0)
    assert w.arrival_s.tolist() == [0, 2, 4, 4, 8] and w.prompt.tolist() == [20, 40, 10, 30, 50]
    assert w.output.tolist() == [2, 4, 1, 3, 5]
    assert "2 out-of-order arrivals sorted" in w.label


def test_one_request_with_no_offline_share(tmp_path):
    w = workload.load(write_trace(tmp_path, ["2023-11-16 18:15:46.68,512,64"]), offline_share=0.0)
    assert w.duration_s == 0.0 and w.arrival_s.tolist() == [0.0] and not w.offline.any()
    assert w.label == "trace.csv (1 request over 0 s, 0% offline)"
    for share in (1.0, -0.1, float("nan")):
        with pytest.raises(workload.WorkloadError, match=r"workload.offline_share=.*must be in \[0, 1\)"):
            workload.load(write_trace(tmp_path, ["0,1,1"]), offline_share=share)


@pytest.mark.parametrize("name, content, match", [
    ("trace.txt", "TIMESTAMP\n0\n", r"workload.path=.*trace.txt.*unknown format '.txt'; readable: .csv \(CSV\), "
                                    r".jsonl \(JSON lines\), .json \(JSON\), .parquet \(Parquet\)"),
    ("trace", "", r"unknown format '\(no suffix\)'"),
    ("trace.csv", "", r"^trace trace.csv has no requests \(the file is empty\)$"),
    ("trace.jsonl", "", "has no requests"),
    ("trace.parquet", "", "has no requests"),
    ("trace.csv", "  \n", "has no requests"),
    ("trace.csv", HEADER + "\n", "has no requests"),
    ("trace.jsonl", "\n\n", "has no requests"),
    ("trace.jsonl", '{"TIMESTAMP": 0, "ContextTokens": 1, "GeneratedTokens": 1}\n{"TIMESTAMP": 1, Context\n',
     r"^trace trace.jsonl: line 2 is not JSON \(Expecting property name"),
    ("trace.jsonl", '[{"TIMESTAMP": 0}]\n', r"line 1 is a JSON array, not an object"),
    ("trace.json", '[{"TIMESTAMP": 0, "ContextTokens": 1, "GeneratedTokens": 1}, 3]', r"element 1 of its array is a JSON "
                                                                                      r"number, not an object"),
    ("trace.json", '[{"TIMESTAMP": 0},\n', r"^trace trace.json is not JSON \(Expecting value at line 2\)"),
    ("trace.json", "[]", "has no requests"),
    ("trace.json", '{"TIMESTAMP": [0, 1], "ContextTokens": [1, 2], "GeneratedTokens": [1, 1]}',
     r"column 'TIMESTAMP' holds a JSON array at row 0, not a single value"),
    ("trace.json", "[" * 100_000, r"is not JSON \(nested too deep\)"),
    ("trace.jsonl", "[" * 100_000, r"line 1 is not JSON \(nested too deep\)"),
    ("trace.parquet", "not parquet at all", r"^trace trace.parquet is not readable as Parquet: "),
    ("trace.csv", HEADER + "\n0,1,1\n1,2,3,4,5\n", r"not readable as CSV: Error tokenizing data"),
])
def test_unreadable_files_are_one_message(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(workload.WorkloadError, match=match) as err:
        workload.load(path)
    assert "\n" not in str(err.value)


def test_header_only_parquet_has_no_requests(tmp_path):
    pd.DataFrame({"TIMESTAMP": pd.Series([], dtype=float)}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(workload.WorkloadError, match="has no requests"):
        workload.load(tmp_path / "t.parquet")


@pytest.mark.parametrize("rows, header, match", [
    (["0,10,5"], "time,prompt,out", r"lacks column\(s\)"),
    (["0,10,5", "1,-3,5"], None, "negative or missing token count at row 1"),
    # An infinite count cast to an integer is garbage: it crashed the compiled simulation (a segfault).
    (["0,10,5", "1,inf,5"], None, r"column 'ContextTokens' has a token count of inf at row 1, more than 2,147,483,647"),
    (["0,10,5", "1,10,3e12"], None, r"column 'GeneratedTokens' has a token count of 3e\+12 at row 1"),
    # A NaN time used to pass and hang the simulation.
    (["0,10,5", "1,10,5", ",10,5"], None, r"missing time in column 'TIMESTAMP' at row 2"),
    (["2023-11-16 18:15:46,10,5", ",10,5"], None, r"missing time in column 'TIMESTAMP' at row 1"),
    (["2023-11-16 18:15:46,10,5", "yesterday,10,5"], None, r"unparseable time 'yesterday' in .* at row 1"),
    # Numbers with a stray word: the word and its row are named, not the first number.
    (["0,10,5", "abc,20,30", "2,10,5"], None, r"non-numeric time 'abc' in column 'TIMESTAMP' at row 1"),
])
def test_bad_traces_are_refused(tmp_path, rows, header, match):
    path = write_trace(tmp_path, rows, header or HEADER)
    with pytest.raises(workload.WorkloadError, match=match):
        workload.load(path)


def test_a_null_time_in_json_lines_names_its_row(tmp_path):
    path = write_jsonl(tmp_path, [{"TIMESTAMP": 0, "ContextTokens": 1, "GeneratedTokens": 1},
                                  {"TIMESTAMP": None, "ContextTokens": 1, "GeneratedTokens": 1}])
    with pytest.raises(workload.WorkloadError, match=r"trace.jsonl: missing time in column 'TIMESTAMP' at row 1"):
        workload.load(path)


def test_requests_over_the_context_are_refused_truncated_or_dropped(tmp_path):
    # Long prompts: 100k tokens, and one output that alone exceeds the window.
    path = write_trace(tmp_path, ["0,100,10", "1,100000,50", "2,10,9000", "3,8000,192", "4,8100,200"])
    w = workload.load(path)
    with pytest.raises(workload.WorkloadError, match=r"^3 of 5 requests exceed .*8192-token .*largest: 100050 tokens"):
        workload.fit_to_context(w, 8192, "refuse")
    cut = workload.fit_to_context(w, 8192, "truncate")
    assert cut.prompt.tolist() == [100, 8142, 1, 8000, 7992] and cut.output.tolist() == [10, 50, 8191, 192, 200]
    assert cut.label.endswith("; 3 requests over the 8192-token context truncated")
    kept = workload.fit_to_context(w, 8192, "drop")
    assert kept.prompt.tolist() == [100, 8000] and kept.arrival_s.tolist() == [0.0, 3.0]
    assert kept.label.endswith("; 3 requests over the 8192-token context dropped")
    with pytest.raises(workload.WorkloadError, match="all 5 requests exceed .* leaves nothing to plan for"):
        workload.fit_to_context(w, 100, "drop")
    with pytest.raises(workload.WorkloadError, match="over_context='clip': choose one of refuse, truncate, drop"):
        workload.fit_to_context(w, 8192, "clip")


def test_dates_with_a_number_like_one_still_parse(tmp_path):
    # A compact date reads as a number too; in a column of dates it is a date, not the stray word.
    path = write_trace(tmp_path, ["2023-11-16 18:15:46,10,5", "20231116,10,5", "2023-11-16 18:15:49,10,5"])
    assert len(workload.load(path).arrival_s) == 3


def test_zero_token_prompts_and_outputs_count_as_one_and_the_label_says_so(tmp_path):
    w = workload.load(write_trace(tmp_path, ["0,0,5", "1,10,0", "2,10,5"]))
    assert w.prompt.tolist() == [1, 10, 10] and w.output.tolist() == [5, 1, 5]
    assert "1 prompts of 0 tokens counted as 1" in w.label and "1 outputs of 0 tokens counted as 1" in w.label
