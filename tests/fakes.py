"""Fake hardware at the narrowest boundary: a pynvml-shaped module and a clock."""
from __future__ import annotations


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


class FakeNvml:
    """pynvml's calls used by the meters, over a GPU drawing `power_w` (a function of time)
    whose energy counter (mJ) refreshes every `update_period_s`."""

    NVMLError = NVMLError

    def __init__(self, clock: FakeClock, power_w=lambda t: 100.0, update_period_s: float = 0.05,
                 has_counter: bool = True, has_power: bool = True, uuids=("GPU-aaaa",)):
        self.clock, self.power_w, self.update_period_s = clock, power_w, update_period_s
        self.has_counter, self.has_power, self.uuids = has_counter, has_power, uuids
        self.initialised = False

    def _energy_mj(self, t: float) -> int:
        # The counter only moves at update boundaries; integrate power up to the last one.
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
