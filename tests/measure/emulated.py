"""An emulated GPU for protocol tests (real time, short periods: each point takes well under 1 s)."""
from __future__ import annotations

from bench.measure.emulator import EmulatedDevice, EmulatedNvml, PowerModel
from bench.measure.meters.nvml_counter import NvmlEnergyMeter
from bench.measure.protocol import Protocol, measure_point

PERIOD_S = 0.01
MODEL = PowerModel(idle_w=60.0, busy_w=300.0, ramp_s=0.005)


def gpu(call_s: float = 1e-3, period_s: float = PERIOD_S, launch_s: float = 0.0, **nvml_kw):
    device = EmulatedDevice(call_s, MODEL, launch_s=launch_s)
    nvml = EmulatedNvml(device, period_s=period_s, **{"lag_s": 0.002, "phase_s": 0.0037, **nvml_kw})
    return device, nvml, NvmlEnergyMeter(nvml, nvml.nvmlDeviceGetHandleByIndex(0))


def fast(**kw) -> Protocol:
    return Protocol(**{"trials": 2, "min_window_s": 0.08, "warmup_s": 0.0, "lead_in_s": 0.02,
                       "period_samples": 3, "monitor_interval_s": 0.0005, "target_rel_error": 0.01, **kw})


def measure(device, meters, protocol=None, graph=True, wait=None, **kw):
    return measure_point(device.call, meters, protocol or fast(), sync=device.sync, mark=device.mark,
                         wait=wait or device.wait, done=device.done, graph=(lambda n: (lambda: device.replay(n))) if graph else None,
                         calibration_s=0.005, **kw)


def rel_error(result, device, domain: int = 0) -> float:
    return result.domains[domain].energy_per_call_j / device.true_energy_per_call_j - 1
