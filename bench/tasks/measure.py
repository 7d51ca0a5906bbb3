"""`task=measure`: measure one point (kernel case x shape x device) and store it."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch

from bench.measure import environment
from bench.measure.environment import resolve_device, resolve_dtype
from bench.measure.results import ResultsStore, StoredRow, point_key
from bench.measure.row import identity, point_row
from bench.measure.session import Setup, measure_on_device, say_once
from kernels import REGISTRY, Case, Shape
from kernels.cases import offload_case
from kernels.custom import CUSTOM_KERNEL, load_case

if TYPE_CHECKING:  # the typed config comes down from bench.cli; only its type is named here
    from bench.cli.schema import BenchConf

log = logging.getLogger(__name__)


def shape_of(cfg: BenchConf) -> Shape:
    return Shape(
        batch_size=cfg.batch_size, heads=cfg.heads, kv_heads=cfg.kv_heads, head_dim=cfg.head_dim,
        seq_len=cfg.seq_len, context_len=cfg.context_len, causal=cfg.causal, page_size=cfg.page_size,
        offload_fraction=float(cfg.offload.fraction), offload_threads=cfg.offload.threads,
        offload_chunks=cfg.offload.chunks, hidden=cfg.hidden, ffn=cfg.ffn,
    )


def case_of(cfg: BenchConf) -> Case:
    """The case measured: a user's (`kernel=custom`), the kernel, or its CPU-offload variant when
    `offload` is not none."""
    if cfg.kernel.name == CUSTOM_KERNEL:
        return load_case(cfg.kernel.target)
    return REGISTRY.get(offload_case(cfg.kernel.name, cfg.offload.mode))


def setup_of(cfg: BenchConf, device: torch.device) -> Setup:
    return Setup(device=device, protocol=cfg.measure, meter=cfg.meter, clocks=cfg.gpu.clocks,
                 busy_check=cfg.gpu.busy_check, state_dir=cfg.gpu.state_dir, lock=cfg.lock, codecarbon=cfg.codecarbon)


def identity_of(cfg: BenchConf) -> dict[str, Any]:
    """What defines the point `cfg` asks for (its resume key hashes this)."""
    device = resolve_device(cfg.device)
    target = cfg.kernel.target if cfg.kernel.name == CUSTOM_KERNEL else None
    return identity(case_of(cfg), shape_of(cfg), device, resolve_dtype(cfg.dtype, device),
                    environment.device_name(device), cfg.seed, cfg.threads, cfg.measure, cfg.gpu.clocks, cfg.meter,
                    environment.software(device), kernel_target=target)


def run(cfg: BenchConf) -> dict[str, Any]:
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if device.type != "cuda":
        say_once("No GPU in use: measuring host energy only (CPU fallback).")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    case, shape = case_of(cfg), shape_of(cfg)
    ident = identity_of(cfg)
    key = point_key(ident)
    store = ResultsStore(cfg.results_dir)
    if store.has(key):
        log.info("%s %s: already measured in %s (key %s), skipped", case.name, case.shape_fields(shape), store.root, key)
        return StoredRow(store.read(key))
    # Asked again under the device lock: a job that waited for it may find the point measured meanwhile.
    # The row is stored before the lock is released, so that job cannot slip in between.
    rows: list[dict[str, Any]] = []

    def keep(measured) -> None:
        rows.append(point_row(ident, key, case, shape, dtype, measured, cfg.gpu.clocks))
        store.write(rows[0])

    measured = measure_on_device(lambda: case.build(shape, device, dtype, cfg.seed), setup_of(cfg, device),
                                 graph_capturable=case.graph_capturable, done=lambda: store.has(key), keep=keep)
    if measured is None:
        log.info("%s %s: measured by another job while this one waited for the device (key %s), skipped",
                 case.name, case.shape_fields(shape), key)
        return store.read(key)
    row = rows[0]
    log.info("%s %s: %.4g ms/call, measured %.4g mJ/token (%s), incl. modelled %.4g mJ/token (%s), quality %s",
             case.name, case.shape_fields(shape), row["time_per_call_s"] * 1e3, row["measured_energy_per_token_j"] * 1e3,
             row["measured_method"], row["energy_per_token_j_incl_model"] * 1e3, row["energy_incl_model_method"],
             row["quality"])
    return row
