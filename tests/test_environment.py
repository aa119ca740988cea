"""The exact pins: constraints.txt (what `make` installs), environment.yml (conda, Python 3.11) and the Colab stacks
of `make test-compat` (compat/colab-*.txt) must agree with each other and with pyproject.toml's ranges."""

import re

import pytest
from packaging.requirements import Requirement  # installed with pytest

from .conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")

TEST_TOOLS = ("pytest", "pytest-xdist", "nbval", "ruff")


def pins(lines) -> dict[str, str]:
    """name -> version of each `name==version` line; the constraints' Python 3.10 lines are left out."""
    found = {}
    for line in lines:
        if "python_version < '3.11'" in line:  # constraints.txt's pins for Python 3.10 only
            continue
        match = re.match(r"^\s*-?\s*([A-Za-z0-9_.-]+)==([^;\s]+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def python310_pins() -> dict[str, str]:
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return {k: v for line in lines if "python_version < '3.11'" in line for k, v in pins([line.split(";")[0]]).items()}


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    installed = project["dependencies"] + extras["test"] + extras["sweep"] + extras["export"]  # what make installs
    reqs = [Requirement(r) for r in installed]
    return {r.name.lower(): r for r in reqs}


def colab_stacks() -> dict[str, dict[str, str]]:
    files = sorted((REPO / "compat").glob("colab-*.txt"))
    assert files, "compat/colab-*.txt missing"
    return {f.stem: pins(f.read_text().splitlines()) for f in files}


def test_conda_pins_the_same_versions_as_constraints():
    constraints = pins((REPO / "constraints.txt").read_text().splitlines())
    conda = pins((REPO / "environment.yml").read_text().splitlines())
    assert conda == constraints
    assert len(constraints) >= 10


def test_constraints_pin_exactly_the_declared_dependencies():
    constraints = pins((REPO / "constraints.txt").read_text().splitlines())
    assert set(constraints) == set(requirements())
    assert set(python310_pins()) <= set(constraints)


@pytest.mark.parametrize("which", ["constraints", "python 3.10", "colab"])
def test_every_pin_lies_in_the_declared_range(which):
    reqs = requirements()
    if which == "constraints":
        tables = {"constraints.txt": pins((REPO / "constraints.txt").read_text().splitlines())}
    elif which == "python 3.10":
        tables = {"constraints.txt (Python 3.10)": python310_pins()}
    else:
        tables = colab_stacks()
    for source, table in tables.items():
        for name, version in table.items():
            if name in reqs:
                assert reqs[name].specifier.contains(version), f"{source}: {name}=={version} outside {reqs[name]}"


def test_colab_stacks_pin_tensorflow_keras_and_the_test_tools():
    constraints = pins((REPO / "constraints.txt").read_text().splitlines())
    for stack, table in colab_stacks().items():
        assert {"tensorflow", "keras", "numpy"} <= set(table), stack
        assert {tool: table.get(tool) for tool in TEST_TOOLS} == {tool: constraints[tool] for tool in TEST_TOOLS}, stack
