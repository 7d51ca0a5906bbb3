"""`python -m bench.fidelity --out DIR`: our energy protocol and two baselines on the NVML
emulator over call durations, update periods and counter modes, against the true energy."""
from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v < 10 for v in values):
        raise argparse.ArgumentTypeError(f"values must be seconds in (0, 10), got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    from bench.fidelity.run import CALL_S, COUNTER_MODES, PERIOD_S, PROTOCOLS

    parser = argparse.ArgumentParser(prog="python -m bench.fidelity", description=__doc__)
    parser.add_argument("--out", required=True, type=Path, help="folder for fidelity.csv, .md, .png")
    parser.add_argument("--call-s", type=_floats, default=CALL_S, help="call durations (s), comma-separated")
    parser.add_argument("--period-s", type=_floats, default=PERIOD_S, help="counter update periods (s)")
    parser.add_argument("--modes", default=",".join(COUNTER_MODES), help=f"counter modes from {COUNTER_MODES}")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS), help=f"from {PROTOCOLS}")
    parser.add_argument("--baseline-repeats", type=int, default=3)
    args = parser.parse_args(argv)  # bad arguments: one usage line and exit 2, before any work
    modes, protocols = tuple(args.modes.split(",")), tuple(args.protocols.split(","))
    for name, values, allowed in (("--modes", modes, COUNTER_MODES), ("--protocols", protocols, PROTOCOLS)):
        if not set(values) <= set(allowed):
            parser.error(f"{name}: choose from {', '.join(allowed)}")
    if args.baseline_repeats < 1:
        parser.error("--baseline-repeats must be >= 1")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} exists and is not a folder")

    from bench.common.markdown import cell
    from bench.fidelity import report
    from bench.fidelity.run import Grid, run, settings

    grid = Grid(call_s=args.call_s, period_s=args.period_s, counter_modes=modes, protocols=protocols,
                baseline_repeats=args.baseline_repeats)

    def progress(row: dict) -> None:
        print(f"{row['protocol']:>17} {row['counter_mode']:>6} period {cell(row['period_s'])} s  call "
              f"{cell(row['call_s'])} s: error {row['rel_error']:+.3%}, cv {cell(row['cv'])}, "
              f"{row['measure_s']:.2f} s", flush=True)

    try:
        rows = run(grid, progress)
    except KeyboardInterrupt:
        print("fidelity: interrupted, nothing written", file=sys.stderr)
        return 130
    import datetime
    import os

    env = {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "emulator": "bench.measure.emulator, in real time on this host"}
    for path in report.write(rows, args.out, settings(grid), env):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
