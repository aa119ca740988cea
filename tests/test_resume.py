"""Interruption: a run killed with SIGKILL mid-epoch resumes to the same result, within budget."""

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from cifar100_helpers.errors import RunError
from cifar100_helpers.running import notebook_runner
from cifar100_helpers.running.history import read_history

from .conftest import REPO

pytestmark = pytest.mark.slow  # three smoke runs through the pipeline: make test-slow

SMOKE = ["--recipe", "smoke", "--epochs", "3", "--deterministic", "--seed", "7"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cifar100_helpers", "run", *args]


def final_weights(run_dir) -> list[np.ndarray]:
    return keras.models.load_model(run_dir / "model.keras").get_weights()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "straight"
    subprocess.run(cli(*SMOKE, "--output", str(out)), cwd=REPO, check=True, capture_output=True, timeout=600)
    return out


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    process = subprocess.Popen(
        cli(*SMOKE, "--output", str(out)), cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 300
    while len(read_history(out / "history.csv")) < 1:  # at least one finished epoch
        assert process.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the pipeline and its notebook kernel, mid-epoch 2
    process.wait()
    assert len(read_history(out / "history.csv")) < 3

    done = subprocess.run(cli("--resume", str(out)), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]

    history = read_history(out / "history.csv")
    assert [r["epoch"] for r in history] == [1, 2, 3]  # each epoch once, never beyond the budget
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["attempts"]) == 2
    assert "01_data.ipynb" in manifest["attempts"][1]["skipped"]
    straight = read_history(uninterrupted / "history.csv")
    assert [r["loss"] for r in history] == [r["loss"] for r in straight]
    for a, b in zip(final_weights(out), final_weights(uninterrupted), strict=True):
        assert np.array_equal(a, b)


def test_deterministic_runs_repeat_bit_for_bit(uninterrupted, tmp_path):
    again = tmp_path / "again"
    subprocess.run(cli(*SMOKE, "--output", str(again)), cwd=REPO, check=True, capture_output=True, timeout=600)
    first, second = (json.loads((d / "metrics.json").read_text()) for d in (uninterrupted, again))
    assert first == second
    for a, b in zip(final_weights(again), final_weights(uninterrupted), strict=True):
        assert np.array_equal(a, b)
    assert json.loads((again / "run.json").read_text())["deterministic"] is True


def test_resume_refuses_a_completed_run_or_a_wrong_path(uninterrupted, tmp_path, capsys):
    with pytest.raises(RunError, match="already completed"):
        notebook_runner.resume(uninterrupted)
    (uninterrupted / "report.html").unlink()  # lost (killed while writing it): --resume writes it again
    notebook_runner.resume(uninterrupted)
    assert (uninterrupted / "report.html").exists() and "written again" in capsys.readouterr().out
    with pytest.raises(RunError, match="not a run directory"):
        notebook_runner.resume(tmp_path)
