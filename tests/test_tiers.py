"""The package's tiers hold: the ML modules (and the shared base: config, errors, files, machine, distribute) import
nothing from ``running/`` or ``commands/``, ``running/`` imports nothing from ``commands/``, and the notebooks
import only the ML tier and ``running``. Imports inside functions count too; read from the source, not run."""

import ast
import json
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGE = REPO / "cifar100_helpers"
ENTRY_POINT = PACKAGE / "__main__.py"  # `python -m cifar100_helpers`: the command line, by definition


def imported(source: str, module: str) -> set[str]:
    """The package modules ``source`` (the code of ``module``, dotted) imports, as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found |= {target, *(f"{target}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.startswith("cifar100_helpers")}


def tier(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("running", "commands") else "ml"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts) + (".__init__" if parts[-1] == "__init__" else "")


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != ENTRY_POINT)
ALLOWED = {"ml": {"ml"}, "running": {"ml", "running"}, "commands": {"ml", "running", "commands"}}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_its_own_tier_and_those_below(path):
    name = module_name(path)
    wrong = {t for t in imported(path.read_text(), name) if tier(t) not in ALLOWED[tier(name)]}
    assert not wrong, f"{path.relative_to(REPO)} ({tier(name)} tier) imports {sorted(wrong)}"


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_import_only_the_ml_tier_and_running(path):
    cells = json.loads(path.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]
    code = "\n".join(line for line in lines if line.lstrip().startswith(("import ", "from ")))
    wrong = {t for t in imported(code, "notebook") if tier(t) == "commands"}
    assert not wrong, f"{path.name} imports {sorted(wrong)}"


def test_the_reader_sees_a_violation():
    """The check itself: an import from commands/ in an ML module and in running/ is found, lazy or not."""
    lazy = "def f():\n    from .commands import leaderboard\n"
    assert {tier(t) for t in imported(lazy, "cifar100_helpers.training")} >= {"commands"}
    assert "cifar100_helpers.commands.cli" in imported("from ..commands import cli", "cifar100_helpers.running.x")
    assert tier("cifar100_helpers.running.files") == "running" and tier("cifar100_helpers.files") == "ml"
