"""`task=validate`: a device model held against measured servers (ML.ENERGY v3 format), with
`validate.calibration=refit` also calibrating on the file (in-sample, said so, leave-one-out beside)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.carbon.validation import report
from bench.common.files import atomic_write_text
from bench.common.interrupt import stop_if_interrupted

ASSUMPTIONS = ("prompt_mean_tokens", "prompt_sigma", "max_output_tokens", "max_num_batched_tokens",
               "max_model_len_tokens", "gpu_memory_utilization", "runtime_reserve_gib", "runtime_reserve_tp_gib",
               "num_requests", "seed")

if TYPE_CHECKING:
    from bench.cli.schema import BenchConf


def run(cfg: "BenchConf") -> dict[str, Any]:
    conf = cfg.validate
    out = Path(conf.out_dir or Path(cfg.results_dir) / "validate")
    v = report.validate(conf)
    stop_if_interrupted()
    slos = [conf.itl_slo_s] + [s for s in conf.extra_itl_slos_s if s != conf.itl_slo_s]
    png = report.plot(v, out / "validate.png")
    text = report.markdown(v, slos, png.name)
    stop_if_interrupted()
    atomic_write_text(out / "validate.csv", v.table.to_csv(index=False))
    atomic_write_text(out / "validate.md", text)
    if v.calibration is not None:
        about = {"measurements": v.source, "model": conf.model, "num_gpus": int(v.table["num_gpus"].iloc[0]),
                 "assumptions": {k: getattr(conf, k) for k in ASSUMPTIONS}}
        atomic_write_text(out / f"calibration_{conf.gpu}_{v.calibration.source}.json",
                          json.dumps(v.calibration.to_json(about), indent=1) + "\n")
    print(text)
    print(f"wrote {out / 'validate.md'}, {out / 'validate.csv'} and {png}")
    t = report.comparable(v.table)  # (rows without a steady state in the replay are not compared)
    return {"validate_worst_energy_rel_error": float(t.energy_rel_error.abs().max()),
            "validate_worst_p90_itl_rel_error": float(t.p90_itl_rel_error.abs().max()),
            "validate_same_choice": (report.choice(t, conf.itl_slo_s, "measured")
                                     == report.choice(t, conf.itl_slo_s, "predicted"))}
