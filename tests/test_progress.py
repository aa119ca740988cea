"""Live progress: one line per epoch in progress.log, followed by `run` on its output, and TensorBoard logs."""

import io
import subprocess
import sys
import threading
import time

import pytest

from cifar100_helpers import config, data, models
from cifar100_helpers.running import epoch_files, progress
from cifar100_helpers.running.run_dir import RunDir

from .conftest import REPO


def test_following_prints_lines_as_they_are_appended(tmp_path):
    path, out = tmp_path / "progress.log", io.StringIO()
    path.write_text("an earlier attempt's line\n")

    def writer():
        for k in range(3):
            progress.append(path, f"epoch {k + 1}/3")
            time.sleep(0.05)

    with progress.following(path, out, interval=0.02):
        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
    lines = out.getvalue().splitlines()
    assert [line.split("] ")[1] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_epoch_lines_and_tensorboard_events(archive, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = config.make_config("smoke", epochs=2)
    ds = data.load(archive, verify=False)
    run = RunDir(tmp_path / "run").create()
    epoch_files.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    lines = run.progress.read_text().splitlines()
    assert len(lines) == 2 and "epoch 1/2: loss " in lines[0] and "val_accuracy" in lines[0]
    assert "images/s, ETA" in lines[0] and lines[1].endswith("remaining 0 epoch(s)")
    tags = {}
    for split in ("train", "validation"):
        events = EventAccumulator(str(run.tensorboard / split))
        events.Reload()
        tags[split] = set(events.Tags()["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "epoch_top5", "epoch_learning_rate", "epoch_images_per_second"} <= tags[
        "train"
    ]
    assert {"epoch_loss", "epoch_accuracy"} <= tags["validation"]


@pytest.mark.slow  # make test-slow: heavy
def test_run_prints_each_epoch_as_it_ends_into_a_log_file(tmp_path):
    """Output redirected to a file (CI, nohup): the epoch lines arrive before notebook 04 starts."""
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        command = [sys.executable, "-m", "cifar100_helpers", "run", "--recipe", "smoke", "--epochs", "2"]
        subprocess.run([*command, "--output", str(tmp_path / "r")], stdout=out, cwd=REPO, timeout=600, check=True)
    text = log.read_text()
    assert text.index("epoch 1/2: loss") < text.index("epoch 2/2: loss") < text.index("running 04_results.ipynb")
    assert text.index("running 04_results.ipynb") < text.index("04: predicting the test") < text.index("04: Grad-CAM")
    assert "Epoch 1/2" not in text and "━" not in text  # no Keras progress output
