"""A Ctrl-C that Python swallowed still stops a task before it writes its files."""
from __future__ import annotations

import sys


def stop_if_interrupted() -> None:
    """A Ctrl-C whose KeyboardInterrupt was swallowed on the way (raised inside a finaliser, where Python
    cannot raise it: `bench.cli.main.on_unraisable`) has set the entry's flag: a task calls this before
    it writes, so it stops there, as the interrupted line promises. (Read, not imported: the CLI sits
    above every task.)"""
    if getattr(sys.modules.get("bench.cli.main"), "INTERRUPTED", False):
        raise KeyboardInterrupt
