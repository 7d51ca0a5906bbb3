"""The meter interface: `is_available()`, `start()`, `stop() -> Reading`, plus `poll()` so the
protocol can measure how often a meter's value actually changes instead of assuming it."""
from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class Reading:
    """Energy of one domain over one window.

    `method` says how it was obtained (`nvml_counter`, `rapl`, `model:...`); a value with a
    `model:` method is an estimate, not a measurement.
    """

    energy_j: float
    duration_s: float
    domain: str
    method: str
    continuous: bool = False  # exact whenever read (process CPU time), not updated at edges
    cumulative: bool = True  # poll() is a running energy total (False: an instant power)
    max_power_w: float | None = None  # the most the domain can draw, where known (a power limit)

    @property
    def power_w(self) -> float:
        return self.energy_j / self.duration_s if self.duration_s > 0 else float("nan")


class Meter(abc.ABC):
    """One energy domain (a GPU, the CPU packages, DRAM, ...)."""

    domain: str
    method: str

    @property
    def detail(self) -> str:
        """Parameters behind the method (device, zones, model inputs), for the results."""
        return ""

    @abc.abstractmethod
    def is_available(self) -> bool: ...

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> Reading: ...

    @abc.abstractmethod
    def poll(self) -> float:
        """The meter's raw value now (a cumulative counter, or an instantaneous power)."""

    def close(self) -> None:
        """Release what the meter holds (threads, library handles)."""


class MeterUnavailable(RuntimeError):
    """A meter that was asked for cannot be used here; the message says why."""


class MeterFault(RuntimeError):
    """A meter's reading cannot be trusted for the current window (a driver error mid-window, a
    counter that went backwards, wraps that cannot be counted): the protocol redoes the window."""
