"""Fake hardware at the narrowest boundary: a pynvml-shaped module and a clock."""
from __future__ import annotations

import time


class FakeClock:
    """Time that advances only when told to (plus a fixed tick per read, like a real poll)."""

    def __init__(self, tick_s: float = 0.0):
        self.now_s = 0.0
        self.tick_s = tick_s

    def __call__(self) -> float:
        self.now_s += self.tick_s
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


class NVMLError_NoPermission(NVMLError):
    pass


class RealClock:
    """Wall time since creation, for fakes polled by real threads."""

    def __init__(self):
        self._t0 = time.perf_counter()

    @property
    def now_s(self) -> float:
        return time.perf_counter() - self._t0

    def __call__(self) -> float:
        return self.now_s


class _Value:
    def __init__(self, ui):
        self.uiVal = ui


class _FieldValue:
    def __init__(self, ret, ui):
        self.nvmlReturn, self.value = ret, _Value(ui)


class _Process:
    def __init__(self, pid):
        self.pid, self.usedGpuMemory = pid, 1 << 30


class _Util:
    def __init__(self, gpu):
        self.gpu, self.memory = gpu, 0


class FakeNvml:
    """pynvml's calls used by the meters, over a GPU drawing `power_w` (a function of time)
    whose energy counter (mJ) refreshes every `update_period_s`."""

    NVMLError = NVMLError
    NVMLError_NoPermission = NVMLError_NoPermission
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU, NVML_FI_DEV_POWER_INSTANT = 1, 2, 0, 186
    SUPPORTED = {2619: [1980, 1755, 1410, 1005], 1593: [1410, 1005]}  # memory MHz -> SM MHz
    DEFAULT_CLOCKS = (1980, 2619)

    def __init__(self, clock, power_w=lambda t: 100.0, update_period_s: float = 0.05,
                 has_counter: bool = True, has_power: bool = True, uuids=("GPU-aaaa",),
                 stall_after_s: float | None = None, reasons: int = 0, can_lock: bool = True,
                 settle_after_polls: int = 0, processes=(), utilization_pct: int = 0, temp_c: float = 40.0):
        self.clock, self.power_w, self.update_period_s = clock, power_w, update_period_s
        self.has_counter, self.has_power, self.uuids = has_counter, has_power, uuids
        self.stall_after_s, self.reasons, self.can_lock = stall_after_s, reasons, can_lock
        self.settle_after_polls, self.processes, self.utilization_pct = settle_after_polls, processes, utilization_pct
        self.temp_c = temp_c
        self.initialised = False
        self.locked_sm = self.locked_mem = None  # (min, max) MHz while locked
        self.calls: list[str] = []
        self._polls_since_lock = 0

    def _energy_mj(self, t: float) -> int:
        # The counter only moves at update boundaries (and not at all once stalled); integrate
        # power up to the last one.
        if self.stall_after_s is not None:
            t = min(t, self.stall_after_s)
        last = int(t / self.update_period_s) * self.update_period_s
        steps = 1000
        dt = last / steps if last else 0.0
        return int(sum(self.power_w(i * dt) * dt for i in range(steps)) * 1000)

    def nvmlInit(self):
        self.initialised = True

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("index", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        if uuid not in self.uuids:
            raise NVMLError("not found")
        return ("uuid", uuid)

    def nvmlDeviceGetName(self, handle):
        return "Fake H100"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.has_counter:
            raise NVMLError_NotSupported("Not Supported")
        return self._energy_mj(self.clock.now_s)

    def nvmlDeviceGetPowerUsage(self, handle):
        if not self.has_power:
            raise NVMLError_NotSupported("Not Supported")
        return int(self.power_w(self.clock.now_s) * 1000)

    # -- clocks ---------------------------------------------------------------------------
    def nvmlDeviceGetSupportedMemoryClocks(self, handle):
        return list(self.SUPPORTED)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle, mem_mhz):
        return list(self.SUPPORTED[mem_mhz])

    def _lock(self, what, lo, hi):
        self.calls.append(f"lock_{what}:{lo}")
        if not self.can_lock:
            raise NVMLError_NoPermission("Insufficient Permissions")
        setattr(self, f"locked_{what}", (lo, hi))
        self._polls_since_lock = 0

    def nvmlDeviceSetGpuLockedClocks(self, handle, lo, hi):
        self._lock("sm", lo, hi)

    def nvmlDeviceSetMemoryLockedClocks(self, handle, lo, hi):
        self._lock("mem", lo, hi)

    def nvmlDeviceResetGpuLockedClocks(self, handle):
        self.calls.append("reset_sm")
        self.locked_sm = None

    def nvmlDeviceResetMemoryLockedClocks(self, handle):
        self.calls.append("reset_mem")
        self.locked_mem = None

    def nvmlDeviceGetClockInfo(self, handle, kind):
        # A locked clock is reached after `settle_after_polls` reads of the SM clock.
        if kind == self.NVML_CLOCK_SM:
            self._polls_since_lock += 1
        settled = self._polls_since_lock > self.settle_after_polls
        locked = self.locked_sm if kind == self.NVML_CLOCK_SM else self.locked_mem
        default = self.DEFAULT_CLOCKS[0 if kind == self.NVML_CLOCK_SM else 1]
        return locked[0] if locked and settled else default

    # -- telemetry ------------------------------------------------------------------------
    def nvmlDeviceGetTemperature(self, handle, sensor):
        return self.temp_c

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
        return self.reasons

    def nvmlDeviceGetFieldValues(self, handle, fields):
        return [_FieldValue(0, int(self.power_w(self.clock.now_s) * 1000)) for _ in fields]

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return [_Process(pid) for pid in self.processes]

    def nvmlDeviceGetUtilizationRates(self, handle):
        return _Util(self.utilization_pct)
