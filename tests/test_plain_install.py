"""Rehearsal of a plain install: ``pip install .`` (not editable) of a copy of the repository into a fresh venv, then
``python -m cifar100_helpers run --recipe smoke`` and ``compare`` from another folder, as a user does after
``pip install git+URL``. Only the downloads are spared: the new venv reads TensorFlow and the rest from this venv's
site-packages through a .pth file, placed after its own site-packages, so the package itself is the installed copy."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from cifar100_helpers.running.notebook_runner import COMPARE_NOTEBOOK, NOTEBOOK_DIR, NOTEBOOKS, shipped_notebooks

from .conftest import REPO

LEFT_OUT = shutil.ignore_patterns(".git", ".venv*", "outputs", "build", "*.egg-info", "__pycache__", ".*_cache")
STACK = sysconfig.get_paths()  # this venv's: its site-packages and the data files (nbconvert's templates) in share/


def test_the_wheel_carries_the_notebooks(tmp_path):
    source = shutil.copytree(REPO, tmp_path / "source", ignore=LEFT_OUT)  # the build writes build/ beside the code
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w"]
    subprocess.run([*build, str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"cifar100_helpers/notebooks/{n}" for n in (*NOTEBOOKS, COMPARE_NOTEBOOK)} <= names, sorted(names)


def test_notebooks_are_found_inside_an_installed_package_else_in_the_repository(tmp_path):
    installed = tmp_path / "site-packages" / "cifar100_helpers"
    (installed / "notebooks").mkdir(parents=True)
    assert shipped_notebooks(installed) == installed / "notebooks"
    assert NOTEBOOK_DIR == REPO / "notebooks"  # this checkout (an editable install): the repository's own


def plain_install(tmp_path: Path) -> Path:
    """A fresh venv with a non-editable install of a copy of the repository; returns its python."""
    source = shutil.copytree(REPO, tmp_path / "source", ignore=LEFT_OUT)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    purelib = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    Path(purelib.decode().strip(), "zz-tested-stack.pth").write_text(STACK["purelib"] + "\n")
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(source)]
    subprocess.run(pip, check=True, capture_output=True, cwd=tmp_path)
    return python


def user_runs(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["JUPYTER_PATH"] = str(Path(STACK["data"]) / "share" / "jupyter")  # what pip puts in a real venv's share/
    done = subprocess.run([python, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow  # about 2 minutes: the smoke run's four notebooks and notebook 05
def test_a_plain_install_runs_and_compares_from_another_folder(tmp_path):
    python = plain_install(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = "import cifar100_helpers as p; from cifar100_helpers.running import notebook_runner as n; "
    found = user_runs(python, "-c", where + "print(p.__file__); print(n.NOTEBOOK_DIR)", cwd=elsewhere)
    package, notebooks = (Path(line) for line in found.stdout.split())
    assert package.is_relative_to(tmp_path / "venv") and notebooks.is_relative_to(tmp_path / "venv"), found.stdout
    assert all((notebooks / name).is_file() for name in (*NOTEBOOKS, COMPARE_NOTEBOOK)), notebooks

    user_runs(python, "-m", "cifar100_helpers", "run", "--recipe", "smoke", cwd=elsewhere)
    (run,) = (elsewhere / "outputs").glob("smoke-*")  # the default output, under the folder it was started from
    assert all((run / name).is_file() for name in (*NOTEBOOKS, "report.html", "metrics.json", "run.json"))
    assert '"status": "completed"' in (run / "run.json").read_text()

    user_runs(python, "-m", "cifar100_helpers", "compare", cwd=elsewhere)
    assert (elsewhere / "outputs" / "compare" / "report.html").is_file()
    assert (elsewhere / "outputs" / "index.html").is_file()


def test_the_wheel_holds_the_package_and_its_notebooks_and_nothing_left_from_an_earlier_build(tmp_path):
    """setuptools built through build/lib/ and never emptied it: `pip install .` from a checkout shipped modules
    deleted since an earlier install (muon.py, hardware.py, devices.py were found installed). Hatchling builds from
    the source tree; a stale build/lib/ beside it must not reach the wheel."""
    source = shutil.copytree(REPO, tmp_path / "source", ignore=LEFT_OUT)
    stale = source / "build" / "lib" / "cifar100_helpers" / "muon.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("")
    wheel_dir = tmp_path / "wheel"
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w"]
    subprocess.run([*pip, str(wheel_dir), str(source)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheel_dir.glob("*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in name}
    package = {p.relative_to(source).as_posix() for p in (source / "cifar100_helpers").rglob("*.py")}
    notebooks = {f"cifar100_helpers/notebooks/{p.name}" for p in (source / "notebooks").glob("*.ipynb")}
    assert shipped == package | notebooks
