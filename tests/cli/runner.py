"""`python -m bench ...` run in this process (the real entry, Hydra and all): a subprocess per
case would cost seconds of imports each."""
from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> Ran:
    from bench.cli.main import entry

    flags = [a for a in args if a.startswith("-")]  # Hydra's flags precede the overrides
    argv, sys.argv = sys.argv, ["bench", *flags, *(a for a in args if not a.startswith("-"))]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            entry()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        sys.argv = argv
    return Ran(code, out.getvalue(), err.getvalue())
