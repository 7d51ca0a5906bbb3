import json
import os

import pandas as pd
import pytest

from bench.measure.results import NotWritable, ResultsStore, atomic_write_text, check_writable, point_key


def test_point_key_ignores_key_order_and_sees_values():
    a = {"kernel": "decode.torch", "batch_size": 4, "measure": {"trials": 3, "min_window_s": 0.5}}
    b = {"measure": {"min_window_s": 0.5, "trials": 3}, "batch_size": 4, "kernel": "decode.torch"}
    assert point_key(a) == point_key(b)
    assert point_key(a) != point_key({**a, "batch_size": 8})


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "points.csv"
    atomic_write_text(path, "old\n")

    def boom(fd):
        raise KeyboardInterrupt  # e.g. Ctrl-C between write and rename

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["points.csv"]  # no temp file left behind


def test_store_roundtrip_and_table(tmp_path):
    store = ResultsStore(tmp_path / "run")
    assert not store.has("k1") and store.rows() == []
    store.write({"key": "k1", "created_utc": "2026-01-01T00:00:01", "x": 1.5})
    store.write({"key": "k2", "created_utc": "2026-01-01T00:00:00", "x": float("nan"), "y": "a"})
    assert store.has("k1") and store.read("k1")["x"] == 1.5
    table = pd.read_csv(tmp_path / "run" / "points.csv")
    assert list(table["key"]) == ["k2", "k1"]  # in measurement order
    assert set(table.columns) == {"key", "created_utc", "x", "y"}
    assert json.loads((tmp_path / "run" / "points" / "k1.json").read_text())["key"] == "k1"


def test_check_writable_creates_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    check_writable(target)
    assert not (tmp_path / "a").exists()
    assert list(tmp_path.iterdir()) == []


def test_check_writable_rejects_a_file_in_the_path(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotWritable, match="not a directory"):
        check_writable(tmp_path / "f" / "results")


def test_check_writable_rejects_read_only_filesystem():
    with pytest.raises(NotWritable):
        check_writable("/proc/bench-results")
