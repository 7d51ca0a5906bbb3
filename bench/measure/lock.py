"""One measuring job at a time per device, across processes: an exclusive `flock` on a file
named for the device. A second job waits (up to `wait_s`) and then fails with a message naming
the holder. The kernel drops the lock when its holder dies, however it dies."""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

log = logging.getLogger(__name__)


@dataclass
class LockConf:
    """`lock.*`: one lock file per device, so one measuring job runs on it at a time."""

    dir: str = "/tmp/energy-bench/locks"
    wait_s: float = 3600.0  # how long a second job waits for the device before failing
    poll_s: float = 0.2  # how often a waiting job tries the lock


class DeviceBusy(RuntimeError):
    """Another job held the device's lock for longer than we were willing to wait."""


def lock_path(lock_dir: Path | str, device_id: str) -> Path:
    return Path(lock_dir) / (re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) + ".lock")


@contextlib.contextmanager
def device_lock(lock_dir: Path | str, device_id: str, wait_s: float, poll_s: float = 0.2,
                clock: Callable[[], float] = time.monotonic) -> Iterator[Path]:
    path = lock_path(lock_dir, device_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = clock() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = path.read_text() or "unknown"
                if clock() >= deadline:
                    raise DeviceBusy(f"device {device_id} is in use by another bench job ({holder}); waited "
                                     f"{wait_s:g} s (lock.wait_s) for {path}") from None
                if not told:
                    log.warning("device %s is in use by another bench job (%s): waiting", device_id, holder)
                    told = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
