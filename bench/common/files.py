"""Atomic writes: a reader sees the old file or the whole new one, never a part. Temporary
files get unique names in the target's folder, so concurrent writers never share one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _atomic(path: Path, write: Callable[[int, str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # never the target's suffix: globs for *.json must not see it
    try:
        write(fd, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write `text` to `path` atomically (fsynced before the rename)."""
    def write(fd: int, _tmp: str) -> None:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    _atomic(Path(path), write)


def atomic_save_figure(fig: Any, path: Path | str, dpi: int = 110) -> Path:
    """Lay out and save a matplotlib figure atomically, then free it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig.tight_layout()

    def write(fd: int, tmp: str) -> None:
        os.close(fd)
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")

    try:
        _atomic(path, write)
    finally:
        plt.close(fig)
    return path


def read_json_object(path: Path | str) -> dict[str, Any] | None:
    """A JSON object from a file, or None when the file is unreadable or not one (truncated by a
    crash before atomic writes existed, edited by hand): callers skip and count such files."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
