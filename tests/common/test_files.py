"""Atomic writes: whole or nothing, unique temporary names that no `*.json` glob can see."""
import threading

import pytest

from bench.common.files import atomic_save_figure, atomic_write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "point.json"
    atomic_write_text(path, "old")

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["point.json"]


def test_concurrent_writers_never_share_a_temporary_and_globs_never_see_one(tmp_path, monkeypatch):
    import os

    seen_during_writes = []
    real_replace = os.replace

    def watching_replace(src, dst):
        seen_during_writes.append(sorted(p.name for p in tmp_path.glob("*.json")))
        real_replace(src, dst)

    monkeypatch.setattr("os.replace", watching_replace)
    path = tmp_path / "points.json"
    threads = [threading.Thread(target=atomic_write_text, args=(path, str(i) * 1000)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert path.read_text() in {str(i) * 1000 for i in range(8)}  # one writer's whole text
    assert all(names in ([], ["points.json"]) for names in seen_during_writes)  # temporaries are not *.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.json"]


def test_a_figure_is_saved_whole_and_freed(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])
    path = atomic_save_figure(fig, tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
