"""An NVML emulator at the pynvml boundary, over a device whose true power is known at every
instant, so the energy of every call is known exactly and a protocol's error can be measured.

- `power.py`: the device's power over time (idle, busy, a linear ramp between them).
- `device.py`: an asynchronous device running a synthetic kernel (calls queue and run back to
  back, as on a GPU stream; `replay(n)` is one launch of n calls, like a CUDA graph).
- `nvml.py`: the pynvml functions the harness calls, over that device: a total-energy counter
  that updates every `period_s` with a lag, integrating true power either exactly or over only a
  slice of every period (what Yang et al., SC24, report for A100/H100), instant power as NVML
  gives it, GPU utilisation samples (this device's work and another tenant's), and faults injected
  on demand.

Used by the tests and by `python -m bench.fidelity`.
"""
from bench.measure.emulator.device import EmulatedDevice
from bench.measure.emulator.nvml import COUNTER_MODES, EmulatedNvml, Fault
from bench.measure.emulator.power import PowerModel, PowerTimeline

__all__ = ["COUNTER_MODES", "EmulatedDevice", "EmulatedNvml", "Fault", "PowerModel", "PowerTimeline"]
