"""environment.yml (conda, Python 3.11) and pyproject.toml (pip) must pin the same packages and versions."""

import re

import pytest

from .conftest import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        if "python_version < '3.11'" in line:  # pyproject's pins for Python 3.10 only
            continue
        match = re.match(r"^\s*-?\s*\"?([A-Za-z0-9_.-]+)==([^\";\s]+)", line)
        if match:
            found[match.group(1).lower()] = match.group(2)
    return found


def test_conda_and_pip_pin_the_same_versions():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip = pins(project["dependencies"] + project["optional-dependencies"]["test"])
    conda = pins((REPO / "environment.yml").read_text().splitlines())
    assert conda == pip
    assert len(pip) >= 10
