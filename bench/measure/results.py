"""The one writer of `results/`.

A results directory holds one JSON file per measured point (`points/<key>.json`, written
atomically, so an interrupted sweep never leaves a half-written point) and `points.csv`, the
table of all of them, rebuilt atomically under a lock after every point. The key is a hash of
everything that defines the point, so rerunning a sweep into the same directory skips the points
it already has. The schema is documented in `results/README.md`.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import pandas as pd

from bench.common.files import atomic_write_text, read_json_object

SCHEMA_VERSION = 1


class NotWritable(OSError):
    """The results directory cannot be written."""


def point_key(identity: Mapping[str, Any]) -> str:
    """Stable hash of a point's defining configuration (key order does not matter)."""
    canonical = json.dumps({"schema": SCHEMA_VERSION, **identity}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_writable(root: Path | str) -> None:
    """Raise `NotWritable` unless `root` exists as a writable folder or can be created as one.

    Creates nothing that stays: the nearest existing ancestor is probed with a temporary file.
    """
    path = Path(root).absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotWritable(f"{existing} exists and is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".bench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise NotWritable(f"cannot write in {existing}: {err.strerror or err}") from err


class StoredRow(dict):
    """A row a job found stored when it began, so returned without measuring: a sweep's progress
    counts it as resumed (it took no time). Its `created_utc`, kept to the second, cannot tell:
    a rerun within the same second as the first run's last point looked fresh."""


class ResultsStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.points_dir = self.root / "points"

    def _path(self, key: str) -> Path:
        return self.points_dir / f"{key}.json"

    def has(self, key: str) -> bool:
        """A readable point with this key is stored (an unreadable file is measured again and
        replaced, never taken for a result)."""
        return self._path(key).is_file() and read_json_object(self._path(key)) is not None

    def read(self, key: str) -> dict[str, Any]:
        return json.loads(self._path(key).read_text())

    def write(self, row: Mapping[str, Any]) -> Path:
        """Store one point (its `key` field names the file) and refresh `points.csv`."""
        path = self._path(str(row["key"]))
        atomic_write_text(path, json.dumps(dict(row), indent=1, sort_keys=False, default=str))
        self.write_table()
        return path

    def rows(self) -> list[dict[str, Any]]:
        if not self.points_dir.is_dir():
            return []
        rows = [read_json_object(p) for p in sorted(self.points_dir.glob("*.json"))]
        return [r for r in rows if r is not None]  # unreadable files are skipped, not fatal

    def table(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_records(self.rows())
        if "created_utc" in frame:
            frame = frame.sort_values("created_utc", kind="stable").reset_index(drop=True)
        return frame

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write_table(self) -> None:
        # Concurrent jobs (e.g. Slurm array tasks) each rebuild the table from every point file;
        # the lock keeps a slower writer from replacing a newer table with an older one.
        with self._lock():
            atomic_write_text(self.root / "points.csv", self.table().to_csv(index=False))
