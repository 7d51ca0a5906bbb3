"""Request traces: the default trace and its offline share, bad traces refused."""
import numpy as np
import pytest

from bench.carbon.inputs import workload


def write_trace(tmp_path, rows, header="TIMESTAMP,ContextTokens,GeneratedTokens"):
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_default_trace_and_offline_share():
    w = workload.load()
    assert len(w.arrival_s) == 19366 and w.duration_s < 3600
    assert int(np.median(w.prompt)) == 1020 and int(np.median(w.output)) == 129  # as SOURCES.md states
    assert abs(w.offline.mean() - 0.55) < 0.02


@pytest.mark.parametrize("rows, header, match", [
    (["0,10,5"], "time,prompt,out", r"lacks column\(s\)"),
    (["0,10,5", "1,-3,5"], None, "negative or missing token count at row 1"),
    (["5,10,5", "1,10,5"], None, "not sorted"),
])
def test_bad_traces_are_refused(tmp_path, rows, header, match):
    path = write_trace(tmp_path, rows, header or "TIMESTAMP,ContextTokens,GeneratedTokens")
    with pytest.raises(workload.WorkloadError, match=match):
        workload.load(path)
