"""The time budget: `cpu` times its named sizes on this machine before training and trains the largest whose
projected 10 epochs fit `--minutes` (30 by default); the choice is recorded in config.json and run.json, said in
one line, and shown in the report; after epoch 1 a pace that overruns the budget is said in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cifar100_helpers import config, pace, training
from cifar100_helpers.config import SIZES
from cifar100_helpers.errors import ConfigError
from cifar100_helpers.running import epoch_files

from .conftest import REPO


def test_cpu_chooses_its_size_by_budget_unless_a_size_or_widths_are_given():
    cfg = config.make_config("cpu")
    assert (cfg.size, cfg.minutes, cfg.widths) == ("auto", 30.0, SIZES["M"])
    assert config.make_config("cpu", size="S").widths == SIZES["S"]
    assert config.make_config("cpu", widths=[32, 64, 128]).size == ""  # --set widths=[...]: trained as given
    assert config.make_config("cpu", minutes=20).minutes == 20


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"size": "XL"}, "size must be one of"),
        ({"size": "S", "widths": [96, 256, 512]}, "give one of --size or --set widths"),
        ({"minutes": 0}, "give one \\(--minutes 30\\)"),
        ({"minutes": -5}, "minutes must lie in"),
    ],
)
def test_bad_budget_settings_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        config.make_config("cpu", **overrides)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "argv, reason",
    [(["--recipe", "seed", "--minutes", "5"], "recipe seed has no named sizes"),
     (["--recipe", "cpu", "--size", "S", "--minutes", "20"], "size S is given")],
)  # fmt: skip
def test_minutes_where_no_size_is_chosen_is_refused(argv, reason, tmp_path, capsys):
    from cifar100_helpers.commands import cli

    code = cli.main(["run", *argv, "--data", str(tmp_path / "none.tar.gz"), "--output", str(tmp_path / "x")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and reason in line and "drop --minutes" in line


def test_a_size_on_a_network_without_sizes_is_refused():
    with pytest.raises(ConfigError, match="names a size of the airbench network"):
        config.make_config("transfer", size="S")


@pytest.mark.parametrize(
    "speeds, minutes, chosen, timed",
    [
        ({"M": 350}, 30, "M", ["M"]),  # M fits: nothing else is timed
        ({"M": 200, "S": 400}, 30, "S", ["M", "S"]),  # an EPYC in bfloat16: M would take 48 min
        ({"M": 56, "S": 165, "XS": 223, "XXS": 393}, 30, "XXS", ["M", "S", "XS", "XXS"]),  # AVX2, float32
        ({"M": 56, "S": 144, "XS": 189, "XXS": 306, "XXXS": 434}, 30, "XXXS", [*reversed(SIZES)]),  # the showcase
        ({"M": 20, "S": 40, "XS": 60, "XXS": 90, "XXXS": 120}, 30, "XXXS", [*reversed(SIZES)]),  # none fits: smallest
    ],
)
def test_the_largest_size_that_fits_is_chosen(monkeypatch, speeds, minutes, chosen, timed):
    asked, said = [], []

    def time_training(cfg, ds, steps, warmup):
        asked.append(cfg.size)
        placement = training.Placement("cpu", 1, "float32", False, False)
        return pace.Timing(speeds[cfg.size], steps, 1000, {}, 256, placement, None)

    monkeypatch.setattr(pace, "time_training", time_training)
    ds = type("Data", (), {"train": range(50_000)})()
    cfg, record = pace.choose_size(config.make_config("cpu", minutes=minutes), ds, say=said.append)
    assert asked == timed and cfg.size == chosen and cfg.widths == SIZES[chosen] and record["size"] == chosen
    projected = 10 * 50_000 / speeds[chosen] / 60 * pace.MARGIN
    assert record["projected_minutes"] == pytest.approx(projected, abs=0.05)
    (line,) = said
    assert line.startswith(f"time budget {minutes} training minutes: timed M ") and f"chose size {chosen}," in line
    assert ("expect an overrun" in line) == (projected > minutes)


def test_after_epoch_one_an_overrunning_pace_is_said_in_one_line(tmp_path, capsys):
    progress = epoch_files.EpochProgress(tmp_path / "progress.log", 10, 50_000, echo=True, minutes=30)
    progress.on_epoch_begin(0)
    progress.started -= 300  # a 5-minute first epoch: about 50 minutes for 10
    progress.on_epoch_end(0, {"loss": 4.0, "accuracy": 0.1})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "over the 30-minute budget" in lines[1] and "--size" in lines[1]
    progress.on_epoch_begin(1)
    progress.on_epoch_end(1, {"loss": 3.0, "accuracy": 0.2})
    assert len(capsys.readouterr().out.strip().splitlines()) == 1  # said once


@pytest.mark.slow  # the three sizes timed, then a run through the pipeline (generated data)
def test_a_run_times_the_sizes_chooses_records_and_reports(tmp_path):
    """`run --recipe cpu` as a user types it, on a small generated set and one epoch, with a budget so short that
    only the choice rule can be checked (whatever this machine's speed): the largest size whose projection fits,
    else the smallest; config.json, run.json and the report agree."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cifar100_helpers", "run", "--recipe", "cpu", "--epochs", "1", "--minutes",
               "0.05", "--set", "generated=True", "--set", "verify=False", "--output", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    budget = json.loads((out / "run.json").read_text())["budget"]
    fitting = [s for s in reversed(SIZES) if s in budget["probe"] and budget["probe"][s]["projected_minutes"] <= 0.05]
    assert budget["size"] == (fitting[0] if fitting else next(iter(SIZES)))
    assert json.loads((out / "config.json").read_text())["size"] == budget["size"]
    assert f"chose size {budget['size']}," in done.stdout
    assert f"chose size {budget['size']}" in (out / "report.html").read_text()


@pytest.mark.slow  # TensorFlow starts in the timing child
def test_a_run_killed_while_timing_leaves_no_timing_process(tmp_path):
    import os
    import signal
    import time

    command = [sys.executable, "-m", "cifar100_helpers", "run", "--recipe", "cpu", "--set", "generated=True",
               "--set", "verify=False", "--output", str(tmp_path / "run")]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def timing() -> list[str]:
        found = subprocess.run(["pgrep", "-P", str(process.pid), "-f", "cifar100_helpers.pace"], capture_output=True)
        return found.stdout.split()

    deadline = time.time() + 120
    while not timing():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    (child,) = timing()
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    deadline = time.time() + 20
    while os.path.exists(f"/proc/{int(child)}") and time.time() < deadline:
        time.sleep(0.2)
    stat = Path(f"/proc/{int(child)}/stat")
    status = stat.read_text().split()[2] if stat.exists() else "gone"
    assert status in ("gone", "Z")
