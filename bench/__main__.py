"""`python -m bench [task=measure] [overrides...]`.

Only the standard library is imported before the `try`, so Ctrl-C at any moment, imports
included, ends with one line fitting the task and exit status 130, never a traceback.
"""
import os
import signal
import sys


def _task(argv: list[str]) -> str:
    for arg in reversed(argv):
        if arg.startswith("task="):
            return arg.partition("=")[2]
    return "measure"


def interrupted_line(argv: list[str]) -> str:
    """What was kept, in the task's terms. Every file is written whole or not at all (a temporary
    file renamed into place), so nothing half-written is left either way."""
    task = _task(argv)
    if task == "plan":
        written = getattr(sys.modules.get("bench.tasks.plan"), "WRITTEN", None)
        if written is not None:  # after the files, while the report printed
            return (f"bench: interrupted after the plan was written ({written}, plans.csv beside it); "
                    "only its printout was cut short.")
        return "bench: interrupted; the plan was not finished and plan.md was not written (it is written last)."
    if task in ("fit", "report", "validate"):
        return (f"bench: interrupted; the {task} may be incomplete (each file it wrote is whole). "
                "Rerun the same command to redo it.")
    entry = sys.modules.get("bench.cli.main")  # absent when interrupted while importing it
    dirs = sorted(getattr(entry, "RESULTS_DIRS", ()))
    where = ", ".join(f"{d}/points" for d in dirs) or "the results directory"
    return (f"bench: interrupted; finished points are kept in {where}. "
            "Rerun the same command to measure the rest (finished points are skipped).")


def _interrupted_while_importing(signum: int, frame: object) -> None:
    # A KeyboardInterrupt raised inside numpy's or scipy's import machinery can surface as a
    # different error (a RecursionError was seen); nothing has been measured yet, so say so and
    # leave at once.
    os.write(2, (interrupted_line(sys.argv[1:]) + "\n").encode())
    os._exit(130)


def main() -> None:
    try:
        signal.signal(signal.SIGINT, _interrupted_while_importing)
        from bench.cli.main import entry

        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C from here on is KeyboardInterrupt
        entry()
    except Exception:
        # An error that Ctrl-C caused part-way through an operation is the interrupt, not a bug.
        if not getattr(sys.modules.get("bench.cli.main"), "INTERRUPTED", False):
            raise
        _stop_interrupted()
    except KeyboardInterrupt:
        # Clocks are already reset and the lock released (both unwind in `finally`); finished
        # points are on disk and the one in progress is not, so a rerun measures exactly the rest.
        _stop_interrupted()


def _stop_interrupted() -> None:
    """Say what was kept, then end with status 130 at once. Everything that matters has unwound
    (files are whole, clocks reset, locks released); the interpreter's own shutdown after this
    (joining pool threads, finalizers) is skipped, as a second signal landing in it once ended a
    plan by SIGINT (status -2) under load after the line was printed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the message
    try:
        print(interrupted_line(sys.argv[1:]), file=sys.stderr)
    except (OSError, ValueError):  # stderr a closed pipe: the status still says it
        pass
    import logging

    logging.shutdown()  # the job's log file, flushed and closed
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(130)


if __name__ == "__main__":
    main()
