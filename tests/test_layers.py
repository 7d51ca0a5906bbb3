"""The layout's contracts: the import-linter layering (`.importlinter`), and no module using
another module's private name (`from m import _x`, `m._x`)."""
import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("bench", "kernels", "hydra_plugins", "tests")


def test_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def private_uses(source: str) -> list[str]:
    """`from <first-party> import _x` and `<imported first-party module>._x` in a module's source."""
    tree = ast.parse(source)
    modules: set[str] = set()  # names bound to first-party modules by imports
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FIRST_PARTY:
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                modules.add(alias.asname or alias.name)  # may be a module (from bench import x)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FIRST_PARTY:
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_the_private_name_check_can_fail():
    assert private_uses("from bench.profile.build import _batch_group\n") == ["from bench.profile.build import _batch_group"]
    assert private_uses("from kernels import triton_decode\ntriton_decode._x.clear()\n") == ["triton_decode._x"]
    assert private_uses("import os\nos._exit(0)\n") == []  # other packages' business


def test_no_module_uses_another_modules_private_name():
    offenders = {}
    for path in sorted(REPO.glob("**/*.py")):
        if ".venv" in path.parts or path.name == "test_layers.py":
            continue
        uses = private_uses(path.read_text())
        if uses:
            offenders[str(path.relative_to(REPO))] = uses
    assert not offenders, offenders
