"""True power of an emulated device over time, and its exact integral.

Power follows the device's state (busy or idle) through a first-order lag with time constant
`ramp_s` (real GPUs take tens of milliseconds to ramp): a gap of a few microseconds between calls
barely moves it, a device busy a fraction d of the time with short gaps settles near
`idle + d x (busy - idle)`, and a long idle spell brings it down to idle. The timeline is a list
of phases, each relaxing from the power it began at towards a target; energy up to any instant
is the sum of the finished phases plus a closed-form part of the current one.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PowerModel:
    idle_w: float = 60.0
    busy_w: float = 400.0
    ramp_s: float = 0.03  # time constant of the approach to busy (or idle) power

    def __post_init__(self) -> None:
        if not (0 <= self.idle_w <= self.busy_w) or not self.ramp_s >= 0:
            raise ValueError(f"need 0 <= idle_w <= busy_w and ramp_s >= 0, got {self}")


def _phase(p0_w: float, target_w: float, tau_s: float, duration_s: float) -> tuple[float, float]:
    """(energy J, power at the end W) of `duration_s` relaxing from `p0_w` towards `target_w`."""
    if duration_s <= 0:
        return 0.0, p0_w
    if tau_s <= 0:
        return target_w * duration_s, target_w
    decay = math.exp(-duration_s / tau_s)
    energy = target_w * duration_s + (p0_w - target_w) * tau_s * (1 - decay)
    return energy, target_w + (p0_w - target_w) * decay


class PowerTimeline:
    """Power over time of a device that is switched between idle and busy, in time order."""

    def __init__(self, model: PowerModel, t0_s: float):
        self.model = model
        self._starts = [t0_s]  # phase begin times
        self._p0 = [model.idle_w]  # power at each phase's begin
        self._target = [model.idle_w]
        self._energy = [0.0]  # energy up to each phase's begin

    @property
    def start_s(self) -> float:
        return self._starts[0]

    @property
    def busy(self) -> bool:
        return self._target[-1] == self.model.busy_w and self.model.busy_w != self.model.idle_w

    def switch(self, t_s: float, busy: bool) -> None:
        """From `t_s` on, the device is busy (or idle); `t_s` is never before the last switch."""
        target = self.model.busy_w if busy else self.model.idle_w
        if target == self._target[-1]:
            return
        if t_s < self._starts[-1]:
            raise ValueError(f"switch at {t_s} before the last one at {self._starts[-1]}")
        energy, p1 = _phase(self._p0[-1], self._target[-1], self.model.ramp_s, t_s - self._starts[-1])
        self._starts.append(t_s)
        self._p0.append(p1)
        self._target.append(target)
        self._energy.append(self._energy[-1] + energy)

    def _at(self, t_s: float) -> tuple[float, float]:
        if t_s < self._starts[0]:  # before the timeline: the device idled
            return self.model.idle_w * (t_s - self._starts[0]), self.model.idle_w
        i = max(0, bisect.bisect_right(self._starts, t_s) - 1)
        energy, power = _phase(self._p0[i], self._target[i], self.model.ramp_s, t_s - self._starts[i])
        return self._energy[i] + energy, power

    def energy_j(self, t_s: float) -> float:
        """True energy from the timeline's start to `t_s`."""
        return self._at(t_s)[0]

    def power_w(self, t_s: float) -> float:
        return self._at(t_s)[1]
