"""Users' own cases: `kernel=custom kernel.target=my_pkg.my_module:make_case`.

`make_case()` takes no arguments and returns a `kernels.Case` (phase, traits, `flops_fn`,
`min_bytes_fn`, `tokens_fn` and a closure builder). The case then runs through validation, the
protocol, results, fit and report exactly as a built-in one does. See the README for a worked
example (`tests/kernels/custom_case_example.py` is the one the tests run).
"""
from __future__ import annotations

import importlib

from kernels.cases import REGISTRY
from kernels.registry import Case, Registry


CUSTOM_KERNEL = "custom"  # the `kernel=` value that names a user's factory


class CustomCaseError(ValueError):
    """A `kernel.target` that does not give a usable case; the message says why."""


def load_case(target: str | None) -> Case:
    """Import `module:function`, call it, and check that it returned a usable `Case`."""
    if not target or ":" not in target:
        raise CustomCaseError("kernel=custom needs kernel.target=<module>:<function> returning a kernels.Case")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CustomCaseError(f"cannot import module {module_name!r} ({err})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise CustomCaseError(f"module {module_name!r} has no function {attr!r}")
    try:
        case = factory()
    except Exception as err:  # a user's code: its failure is a refusal to report, not our traceback
        raise CustomCaseError(f"{target}() raised {type(err).__name__}: {err}") from None
    if not isinstance(case, Case):
        raise CustomCaseError(f"{target}() returned {type(case).__name__}, not a kernels.Case")
    if case.name in REGISTRY:
        raise CustomCaseError(f"{target}() returned a case named {case.name!r}, a built-in case's name; name it apart")
    # The registry's own checks (phase, family, layout, offload mode) apply to users' cases too.
    try:
        Registry([case])
    except ValueError as err:
        raise CustomCaseError(str(err)) from None
    return case
