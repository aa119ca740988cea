"""Resume cannot silently continue the wrong run: a slot older than the state.json that names it (Google Drive
uploads in the background, not in write order), a changed replica count (its schedule would no longer end at
zero), a changed precision (02 ran on other hardware)."""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from cifar100_helpers import config, data, models
from cifar100_helpers.errors import RunError
from cifar100_helpers.running import epoch_files
from cifar100_helpers.running.history import read_history
from cifar100_helpers.running.run_dir import RunDir

from .conftest import REPO


@pytest.fixture(scope="module")
def trained(archive, tmp_path_factory):
    """A smoke run trained for 3 epochs, plus a copy of its slots after epoch 2 (what Drive may still hold)."""
    folder = tmp_path_factory.mktemp("trained")
    cfg = config.make_config("smoke", epochs=4)
    ds = data.load(archive, verify=False)
    run = RunDir(folder / "run").create()
    short = dataclasses.replace(cfg, epochs=2)
    epoch_files.train(models.build(cfg, ds.train.x), ds, short, run, interactive=False)
    shutil.copytree(run.backup, folder / "after-epoch-2")
    epoch_files.train(models.build(cfg, ds.train.x), ds, dataclasses.replace(cfg, epochs=3), run, interactive=False)
    return cfg, ds, folder


@pytest.fixture
def three_epochs(trained, tmp_path):
    """A copy of :func:`trained` for one test to change."""
    cfg, ds, folder = trained
    shutil.copytree(folder, tmp_path / "copy")
    return cfg, ds, RunDir(tmp_path / "copy" / "run"), tmp_path / "copy" / "after-epoch-2"


def test_a_stale_slot_falls_back_to_the_other_one(three_epochs, capsys):
    """state.json names epoch 3 in slot a, but slot a still holds epoch 1's weights (its upload did not arrive):
    slot b holds epoch 2, so the run continues from there and trains epoch 3 again."""
    cfg, ds, run, old = three_epochs
    state = json.loads((run.backup / "state.json").read_text())
    assert state["epoch"] == 3 and state["weights"] == "slot-a.weights.h5"
    shutil.copy(old / "slot-a.weights.h5", run.backup / "slot-a.weights.h5")  # epoch 1's weights
    history = epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    assert "continuing from epoch 2 in the other slot (epoch 3 is trained again)" in capsys.readouterr().out
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]


def test_a_stale_slot_without_a_good_other_slot_stops_in_one_line(three_epochs):
    cfg, ds, run, old = three_epochs
    for slot in ("a", "b"):
        shutil.copy(old / "slot-a.weights.h5", run.backup / f"slot-{slot}.weights.h5")  # epoch 1 in both
    with pytest.raises(RunError, match="holds step .* not the step .* of epoch 3") as err:
        epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    assert "other slot does not hold epoch 2" in str(err.value) and "\n" not in str(err.value)


def test_a_resume_with_another_global_batch_is_refused(three_epochs):
    """The same check as another replica count makes (the global batch and steps per epoch change with it)."""
    cfg, ds, run, _ = three_epochs
    other = dataclasses.replace(cfg, batch_size=cfg.batch_size * 2)
    with pytest.raises(RunError, match=r"trained with 1 replica\(s\) \(steps per epoch \d+, global batch 32\)") as e:
        epoch_files.train(models.build(other, ds.train.x), ds, other, run, interactive=False)
    assert "would no longer end at zero" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow  # TensorFlow with two logical devices in a fresh process
def test_a_resume_on_fewer_replicas_is_refused(tmp_path):
    """Two logical CPU devices as two GPUs (MirroredStrategy) train an epoch; one device resumes: refused."""
    done = subprocess.run([sys.executable, "-m", "tests.simulate_placement", "fewer_replicas"], capture_output=True,
                          text=True, cwd=REPO, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    line = json.loads(done.stdout.strip().splitlines()[-1])["refused"]
    assert "trained with 2 replica(s)" in line and "this runtime has 1" in line


def test_an_untouched_resume_records_the_same_history(three_epochs):
    cfg, ds, run, _ = three_epochs
    history = epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4] == [r["epoch"] for r in read_history(run.history)]
