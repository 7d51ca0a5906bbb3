"""Measuring a closure on a device: the device lock, the busy check, meters, the window monitor,
clocks (observe or lock, always restored), optional codecarbon span, then the protocol.

Both `task=measure` and `bench.measure_callable` run through `measure_on_device`, so a user's
callable is measured exactly as a built-in case is.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from bench.measure import environment
from bench.measure.clocks import ClockControl, ClockRequest, sigterm_raises
from bench.measure.codecarbon_span import CodecarbonConf, codecarbon_span
from bench.measure.lock import LockConf, device_lock
from bench.measure.meters import MeterConf, MeterSet, select_meters
from bench.measure.monitor import GpuTelemetry, gpu_activity
from bench.measure.protocol import MeasurementError, PointResult, Protocol, measure_point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setup:
    """How to measure on a device, whatever is measured."""

    device: torch.device
    protocol: Protocol = field(default_factory=Protocol)
    meter: MeterConf = field(default_factory=MeterConf)
    clocks: ClockRequest = field(default_factory=ClockRequest)
    busy_check: str = "warn"  # warn | error | off
    state_dir: str = "/tmp/energy-bench"
    lock: LockConf = field(default_factory=LockConf)
    codecarbon: CodecarbonConf = field(default_factory=CodecarbonConf)


@dataclass(frozen=True)
class Measured:
    result: PointResult
    environment: dict[str, Any]  # env_* columns
    busy: dict[str, Any]  # what the busy check saw
    span: dict[str, Any]  # codecarbon's figures and ours over the same span


@functools.cache
def say_once(message: str) -> None:
    # A sweep runs many jobs in one process; a fact about the machine is said once.
    log.warning(message)


def synchronizer(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def cuda_event_mark() -> object:
    event = torch.cuda.Event()
    event.record()
    return event


def cuda_graph_builder(fn: Callable[[], object]) -> Callable[[int], Callable[[], object]]:
    """`build(n)`: capture n calls of `fn` in a CUDA graph (after warm-up calls on a side stream,
    as capture requires) and return its replay."""
    def build(n: int) -> Callable[[], object]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(n):
                fn()
        torch.cuda.synchronize()
        return graph.replay

    return build


def check_gpu_idle(meters: MeterSet, busy_check: str, sync: Callable[[], None]) -> dict[str, Any]:
    """Is anything else using the GPU? `warn` records and warns, `error` refuses, `off` skips.
    `sync` waits for this process's work on the device (a sweep's previous point), which the
    check must not mistake for another tenant's."""
    if meters.nvml is None or busy_check == "off":
        return {}
    sync()
    activity = gpu_activity(meters.nvml, meters.gpu_handle, os.getpid(), own_idle_since_s=time.time())
    if activity.busy:
        message = (f"the GPU is in use by something else (utilisation up to {activity.utilization_pct_max}% while "
                   f"this job was idle; other compute PIDs: {list(activity.other_pids) or 'none visible'})")
        if busy_check == "error":
            raise MeasurementError(message + "; gpu.busy_check=error")
        log.warning("%s: measuring anyway (gpu.busy_check=warn), recorded in gpu_busy", message)
    return {"gpu_busy": activity.busy, "gpu_busy_utilization_pct": activity.utilization_pct_max,
            "gpu_other_pids": json.dumps(list(activity.other_pids)), "gpu_busy_method": activity.method}


def clock_control(meters: MeterSet, clocks: ClockRequest, state_dir: str) -> Any:
    if meters.nvml is None:
        return contextlib.nullcontext()
    return ClockControl(meters.nvml, meters.gpu_handle, clocks, state_dir, uuid=meters.gpu_id or "gpu")


def codecarbon_context(conf: CodecarbonConf, device: torch.device) -> Any:
    if not conf.enabled:
        return contextlib.nullcontext({})
    index = (device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" else None
    return codecarbon_span(conf.country, index)


def span_columns(readings: list, codecarbon: dict[str, Any]) -> dict[str, Any]:
    """Our meters over the whole job beside codecarbon's figures for the same span."""
    cols: dict[str, Any] = dict(codecarbon)
    if readings:
        span_j = sum(r.energy_j for r in readings)
        cols.update({"span_energy_j": span_j, "span_duration_s": readings[0].duration_s,
                     "span_energy_method": "; ".join(f"{r.domain}={r.method}" for r in readings)})
        if "codecarbon_energy_j" in codecarbon and span_j:
            cols["codecarbon_rel_diff"] = (codecarbon["codecarbon_energy_j"] - span_j) / span_j
            # Domain by domain where both have one (codecarbon's RAM model has no counterpart without RAPL DRAM).
            for ours, theirs in (({"gpu"}, "codecarbon_gpu_energy_j"), ({"cpu", "cpu_package"}, "codecarbon_cpu_energy_j")):
                mine = sum(r.energy_j for r in readings if r.domain in ours)
                if mine > 0:
                    cols[theirs.replace("_energy_j", "_rel_diff")] = (codecarbon[theirs] - mine) / mine
    return cols


def measure_on_device(build: Callable[[], Callable[[], object]], setup: Setup, graph_capturable: bool = False,
                      done: Callable[[], bool] | None = None, keep: Callable[[Measured], object] | None = None
                      ) -> Measured | None:
    """Build the closure (inside the device lock, so inputs are allocated on an idle device) and
    measure it by the protocol; the lock is released and clocks restored however this ends.
    `graph_capturable`: the closure does no host work, so on a GPU windows may replay a CUDA
    graph of calls (`measure.graph`). `done`: asked again once the lock is held (another job may
    have measured the point while this one waited); if true, nothing is measured and None returned.
    `keep`: called with the result while the lock is still held (to store it)."""
    device = setup.device
    meters = select_meters(device, setup.meter)
    span = select_meters(device, setup.meter) if setup.codecarbon.enabled else None  # ours over codecarbon's span
    for note in meters.notes:
        say_once(note)
    device_id = meters.gpu_id or f"cpu-{socket.gethostname()}"
    protocol = setup.protocol
    try:
        with device_lock(setup.lock.dir, device_id, setup.lock.wait_s, setup.lock.poll_s), sigterm_raises():
            if done is not None and done():
                return None
            extra = check_gpu_idle(meters, setup.busy_check, synchronizer(device))
            telemetry = GpuTelemetry(meters.nvml, meters.gpu_handle) if meters.nvml is not None else None
            cuda = device.type == "cuda"
            with clock_control(meters, setup.clocks, setup.state_dir), \
                    codecarbon_context(setup.codecarbon, device) as codecarbon:
                for m in span.meters if span else []:
                    m.start()
                fn = build()
                result = measure_point(fn, meters.meters, protocol, synchronizer(device), telemetry=telemetry,
                                       temperature_c=telemetry.temperature_c if telemetry else None,
                                       graph=cuda_graph_builder(fn) if cuda and graph_capturable else None,
                                       mark=cuda_event_mark if cuda else None,
                                       wait=(lambda event: event.synchronize()) if cuda else None,
                                       done=(lambda event: event.query()) if cuda else None,
                                       cv_threshold=None if cuda else protocol.cpu_cv_threshold)
                span_readings = [m.stop() for m in span.meters] if span else []
            measured = Measured(result, environment.describe(device), extra, span_columns(span_readings, codecarbon))
            if keep is not None:
                keep(measured)  # stored before the lock is released, so a job waiting for it sees the point
    finally:
        meters.close()
        if span:
            span.close()
    return measured
