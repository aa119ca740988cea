"""Colab, rehearsed: the notebooks run as a Colab user runs them, in a Jupyter kernel that Colab's detection
recognises (tests/fake_colab), their set-up cell unchanged (its clone skipped because the repository is already at
/content/cifar100-10-epochs, as on a second run; its `%run colab_setup.py` and `%pip` installs real), with only
Google Drive faked (a local folder). 00 end to end; 01-04 each in its own fresh runtime, sharing only Drive; and a
disconnect in the middle of training, then 00 again, continuing."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from cifar100_helpers.running import colab
from cifar100_helpers.running.history import read_history

from .conftest import REPO

FAKE = Path(__file__).parent / "fake_colab"
CONTENT = Path("/content")  # Colab's working folder: the set-up cell clones the repository into it
CLONE = CONTENT / "cifar100-10-epochs"
KERNEL = "fake-colab"
pytestmark = [pytest.mark.slow, pytest.mark.rehearsal]  # make test-slow; CI also on Colab's stack


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A Colab-like machine: the repository at the clone's path, a kernel spec for the fake Colab kernel,
    Google Drive's folder, and a working folder. Needs to create /content (root, as on CI)."""
    if CLONE.exists() or CLONE.is_symlink() or colab.DRIVE_MOUNT.exists() or colab.DRIVE_MOUNT.is_symlink():
        pytest.skip(f"{CLONE} or {colab.DRIVE_MOUNT} already exists on this machine")
    made_content = not CONTENT.exists()
    try:
        CONTENT.mkdir(exist_ok=True)
        CLONE.symlink_to(REPO, target_is_directory=True)
    except OSError as exc:
        pytest.skip(f"cannot create {CLONE} ({exc.strerror}): the rehearsal needs root")
    drive = tmp_path / "google-drive"
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, str(FAKE / "colab_kernel.py"), "-f", "{connection_file}"]
    env = {"PYTHONPATH": str(FAKE), "FAKE_COLAB_DRIVE": str(drive)}
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "fake Colab", "language": "python",
                                                  "env": env}))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    (tmp_path / "content").mkdir()
    try:
        yield tmp_path
    finally:
        for link in (colab.DRIVE_MOUNT, CLONE):
            if link.is_symlink():
                link.unlink()
        if made_content:
            shutil.rmtree(CONTENT, ignore_errors=True)


def new_runtime() -> None:
    """A fresh Colab runtime: Drive is not mounted yet (the set-up cell mounts it again)."""
    if colab.DRIVE_MOUNT.is_symlink():
        colab.DRIVE_MOUNT.unlink()


def papermill(folder: Path, notebook: str, name: str, **parameters) -> list[str]:
    """The command that executes ``notebook`` as a Colab user's "Run all" in a fresh runtime."""
    args = [arg for key, value in parameters.items() for arg in ("-y", json.dumps({key: value}))]
    return [sys.executable, "-m", "papermill", str(REPO / "notebooks" / notebook), str(folder / name), "-k", KERNEL,
            "--cwd", str(folder / "content"), "--no-progress-bar", *args]  # fmt: skip


def run_all(folder: Path, notebook: str, name: str, **parameters) -> str:
    new_runtime()
    done = subprocess.run(papermill(folder, notebook, name, **parameters), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return outputs(folder / name)


def outputs(path: Path) -> str:
    cells = nbformat.read(path, as_version=4).cells
    return "".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in cells for o in c.get("outputs", []))


def on_drive(folder: Path, run: str) -> Path:
    return folder / "google-drive" / "MyDrive" / colab.DRIVE_FOLDER / run


def test_00_runs_the_study_onto_google_drive(runtime):
    shown = run_all(runtime, "00_colab.ipynb", "00.ipynb", recipe="smoke", seed=1)
    assert "Mounted at /content/drive" in shown and "Google Drive mounted: runs go to" in shown
    run = on_drive(runtime, "smoke-seed1")
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
    assert (run / "report.html").exists() and "Test top-1" in shown
    assert "[fake colab] iframe on port" in shown  # the report is served from the runtime
    assert not list((runtime / "content").rglob("run.json"))  # nothing went to the runtime's own disk


def test_01_to_04_each_in_a_fresh_runtime_share_only_drive(runtime):
    for notebook in ("01_data.ipynb", "02_model.ipynb", "03_train.ipynb", "04_results.ipynb"):
        shown = run_all(runtime, notebook, notebook, recipe="smoke", interactive=False)
        assert "Mounted at /content/drive" in shown
    run = on_drive(runtime, colab.NOTEBOOK_RUN)
    assert 0 <= json.loads((run / "metrics.json").read_text())["top1"] <= 1
    assert [row["epoch"] for row in read_history(run / "history.csv")] == [1]


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def test_a_disconnect_in_training_then_00_again_continues(runtime):
    command = papermill(runtime, "00_colab.ipynb", "00.ipynb", recipe="smoke", epochs=6, run_name="disconnect")
    run = on_drive(runtime, "disconnect")
    new_runtime()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while len(read_history(run / "history.csv")) < 2:  # training has finished two epochs on Drive
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    runtime_processes = [process.pid, *children(process.pid)]  # papermill and the Colab kernel
    for pid in runtime_processes:
        os.kill(pid, signal.SIGKILL)  # the runtime is gone, its kernels with it
    process.wait(timeout=60)
    finished = len(read_history(run / "history.csv"))
    assert 2 <= finished < 6 and json.loads((run / "run.json").read_text())["status"] != "completed"

    shown = run_all(runtime, "00_colab.ipynb", "00-again.ipynb", recipe="smoke", epochs=6, run_name="disconnect")
    assert "was interrupted: continuing it" in shown
    assert [row["epoch"] for row in read_history(run / "history.csv")] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "run.json").read_text())["status"] == "completed"
