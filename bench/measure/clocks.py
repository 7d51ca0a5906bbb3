"""GPU clock control through NVML: `observe` (default, touches nothing) or `lock`.

In `lock` mode the requested SM (and optionally memory) clock is checked against the GPU's
supported list, locked, waited on until the observed clock settles, verified, and reset when
the block ends: on return, on an exception, on Ctrl-C, and on SIGTERM (turned into an
exception for the block's duration so `finally` runs). A run killed with SIGKILL cannot reset,
so a marker file records a lock in force. The next run on that GPU finds it (clock control is
entered under the device lock, so a marker it sees is never another live job's): in `lock` mode
it resets the clocks the marker names before doing anything else; in `observe` mode it refuses,
since it would measure at locked clocks labelled observed, unless `gpu.clocks.reset_stale=true`
lets it reset them first. Without permission, locking fails with `ClockError` before any
measurement: a run never measures silently at clocks other than the ones asked for.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Optional

from bench.common.files import atomic_write_text

MODES = ("observe", "lock")
BUSY_CHECKS = ("warn", "error", "off")


class ClockError(RuntimeError):
    """Clocks could not be set, verified or reset as asked; the message says why."""


class UnsupportedClock(ClockError):
    def __init__(self, field: str, value: int, valid: list[int]):
        super().__init__(f"gpu.clocks.{field}={value} is not supported; valid: {valid}")
        self.field, self.value, self.valid = field, value, valid


@dataclass
class ClockRequest:
    """`gpu.clocks.*`: observe (touch nothing) or lock (set, verify, always reset)."""

    mode: str = "observe"
    sm_mhz: Optional[int] = None
    mem_mhz: Optional[int] = None
    settle_timeout_s: float = 5.0
    tolerance_mhz: int = 15  # observed clocks within this of the request count as settled
    settle_polls: int = 5  # consecutive polls within tolerance
    reset_stale: bool = False  # observe mode: reset a lock a killed run left (needs permission) instead of refusing


@dataclass
class GpuConf:
    """`gpu.*`: clocks, the busy check, and where lock markers live."""

    clocks: ClockRequest = field(default_factory=ClockRequest)
    busy_check: str = "warn"  # warn | error | off: is anything else using the GPU before we measure
    state_dir: str = "/tmp/energy-bench"  # lock markers, so a killed run's clocks are reset by the next


def supported_clocks_mhz(nvml: ModuleType, handle: Any) -> dict[int, list[int]]:
    """Supported SM clocks per memory clock, both in MHz, highest first."""
    return {int(mem): sorted((int(sm) for sm in nvml.nvmlDeviceGetSupportedGraphicsClocks(handle, mem)), reverse=True)
            for mem in sorted(nvml.nvmlDeviceGetSupportedMemoryClocks(handle), reverse=True)}


def check_supported(request: ClockRequest, table: dict[int, list[int]]) -> None:
    """Raise `UnsupportedClock` (with the valid values) unless the GPU supports the request."""
    if request.mem_mhz is not None and request.mem_mhz not in table:
        raise UnsupportedClock("mem_mhz", request.mem_mhz, sorted(table, reverse=True))
    if request.sm_mhz is not None:
        mems = [request.mem_mhz] if request.mem_mhz is not None else list(table)
        valid = sorted({sm for mem in mems for sm in table[mem]}, reverse=True)
        if request.sm_mhz not in valid:
            raise UnsupportedClock("sm_mhz", request.sm_mhz, valid)


def _marker_path(state_dir: Path, uuid: str) -> Path:
    return state_dir / f"clocks-locked-{uuid}.json"


class ClockControl:
    """Context manager over one GPU's clocks. Clock reads and sleeps are injectable for tests."""

    def __init__(self, nvml: ModuleType, handle: Any, request: ClockRequest, state_dir: Path | str,
                 uuid: str = "gpu", clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if request.mode not in MODES:
            raise ClockError(f"gpu.clocks.mode={request.mode!r}: choose one of {MODES}")
        if request.mode == "lock" and request.sm_mhz is None and request.mem_mhz is None:
            raise ClockError("gpu.clocks.mode=lock needs gpu.clocks.sm_mhz and/or gpu.clocks.mem_mhz")
        self.nvml, self.handle, self.request = nvml, handle, request
        self.marker = _marker_path(Path(state_dir), uuid)
        self.clock, self.sleep = clock, sleep
        self._locked_sm = self._locked_mem = False

    def observed_mhz(self) -> tuple[int, int]:
        nvml = self.nvml
        return (int(nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM)),
                int(nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_MEM)))

    # -- lock and reset -------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(self.handle, *args)
        except self.nvml.NVMLError as err:
            denied = isinstance(err, getattr(self.nvml, "NVMLError_NoPermission", ()))
            hint = (" (needs root, or `nvidia-smi -acp UNRESTRICTED` by an administrator)" if denied else "")
            raise ClockError(f"could not {what}: {err}{hint}") from err

    def reset(self) -> None:
        """Undo every lock this object set (and any a killed run left, per the marker)."""
        errors = []
        for flag, what, fn in (("_locked_sm", "reset SM clocks", self.nvml.nvmlDeviceResetGpuLockedClocks),
                               ("_locked_mem", "reset memory clocks", self.nvml.nvmlDeviceResetMemoryLockedClocks)):
            if getattr(self, flag):
                try:
                    self._call(what, fn)
                    setattr(self, flag, False)
                except ClockError as err:
                    errors.append(str(err))
        if errors:
            raise ClockError("; ".join(errors))
        self.marker.unlink(missing_ok=True)

    def recover(self) -> bool:
        """Reset clocks a previous run locked and could not reset (killed); True if it did."""
        state = self._marker_state()
        if state is None:
            return False
        self._locked_sm, self._locked_mem = bool(state.get("sm")), bool(state.get("mem"))
        self.reset()
        return True

    def _marker_state(self) -> dict[str, Any] | None:
        if not self.marker.exists():
            return None
        try:
            state = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            state = None
        # A marker cut short names nothing: both clocks are taken as locked, so both are reset.
        return state if isinstance(state, dict) else {"sm": True, "mem": True}

    def _write_marker(self) -> None:
        atomic_write_text(self.marker, json.dumps({"pid": os.getpid(), "sm": self.request.sm_mhz,
                                                   "mem": self.request.mem_mhz}))

    def stale_lock(self) -> str | None:
        """What a marker left by a killed `lock` run says is still locked, or None."""
        state = self._marker_state()
        if state is None:
            return None
        return (f"SM {state.get('sm') or 'default'} MHz, memory {state.get('mem') or 'default'} MHz, "
                f"locked by pid {state.get('pid', '?')} (marker {self.marker})")

    def lock(self) -> None:
        req = self.request
        check_supported(req, supported_clocks_mhz(self.nvml, self.handle))
        self._write_marker()  # before touching anything, so a kill in between is recovered
        if req.mem_mhz is not None:
            self._locked_mem = True
            self._call(f"lock memory clocks at {req.mem_mhz} MHz", self.nvml.nvmlDeviceSetMemoryLockedClocks,
                       req.mem_mhz, req.mem_mhz)
        if req.sm_mhz is not None:
            self._locked_sm = True
            self._call(f"lock SM clocks at {req.sm_mhz} MHz", self.nvml.nvmlDeviceSetGpuLockedClocks,
                       req.sm_mhz, req.sm_mhz)
        self.settle()

    def settle(self) -> tuple[int, int]:
        """Wait until the observed clocks match the request for `settle_polls` polls in a row."""
        req = self.request
        deadline = self.clock() + req.settle_timeout_s
        in_a_row = 0
        while True:
            sm, mem = self.observed_mhz()
            ok = ((req.sm_mhz is None or abs(sm - req.sm_mhz) <= req.tolerance_mhz)
                  and (req.mem_mhz is None or abs(mem - req.mem_mhz) <= req.tolerance_mhz))
            in_a_row = in_a_row + 1 if ok else 0
            if in_a_row >= req.settle_polls:
                return sm, mem
            if self.clock() > deadline:
                raise ClockError(f"clocks did not settle at SM {req.sm_mhz} / memory {req.mem_mhz} MHz within "
                                 f"{req.settle_timeout_s:g} s (observed SM {sm}, memory {mem} MHz)")
            self.sleep(0.01)

    def __enter__(self) -> "ClockControl":
        if self.request.mode == "observe":
            stale = self.stale_lock()
            if stale is None:
                return self
            if not self.request.reset_stale:
                raise ClockError(f"clocks a killed lock-mode run left are still in force ({stale}): observe mode "
                                 "would label them observed; reset them (`nvidia-smi -rgc -rmc` as root) and delete "
                                 "the marker, or rerun with gpu.clocks.reset_stale=true")
            self.recover()
            return self
        self.recover()
        try:
            self.lock()
        except BaseException:
            self.reset()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.request.mode == "lock":
            self.reset()


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises `SystemExit(143)` inside the block, so `finally` and `__exit__` run (only
    the main thread can install handlers; elsewhere the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
