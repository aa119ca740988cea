"""Third hostile pass, writing: a full or read-only disk (a real one, a small tmpfs mounted for the test), lock files
that are no files, and the command line's warts (an empty --set key, absurd epochs, an empty --output, bench's
nonsense values). Each failure is one ``error:`` line with exit code 2 that names the true cause."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

from cifar100_helpers import files
from cifar100_helpers.commands import bench
from cifar100_helpers.errors import RunError
from cifar100_helpers.running import notebook_runner
from cifar100_helpers.running.run_dir import RunDir

from .conftest import REPO
from .test_compare import fake_run
from .test_hostile import interrupted_run, one_line_error

CLI = [sys.executable, "-m", "cifar100_helpers"]


def command(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    """The command line as the user runs it (its own process)."""
    return subprocess.run([*CLI, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_line(done: subprocess.CompletedProcess, line: str) -> None:
    assert (done.returncode, done.stderr) == (2, f"error: {line}\n"), done.stderr[-3000:]


@pytest.fixture
def disk(tmp_path):
    """A 64 KiB tmpfs: a real disk that fills (``fill``) or turns read-only (``read_only``). Needs root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here (root only): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount) -> None:
    """Fill the disk to the last byte."""
    filler = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(filler, b"\0" * 4096)
    os.close(filler)


def read_only(mount) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


# --------------------------------------------------------------------------- sweep --output on a full disk


def test_sweep_on_a_full_disk_says_so_and_leaves_no_dead_end_folder(disk):
    pytest.importorskip("ray", reason="sweeps need Ray")
    fill(disk)
    out = disk / "s"
    done = command("sweep", "--recipes", "smoke", "--output", out)
    assert_one_line(done, f"Could not write {out / 'sweep.json'} (the disk is full): free some space, then run the "
                          "same command again.")  # fmt: skip
    assert not out.exists()  # no folder holding only an empty sweep.lock


def test_a_folder_left_holding_only_a_lock_is_taken_by_the_same_sweep_not_a_dead_end(disk):
    """What an earlier version left on a full disk: the folder and an empty sweep.lock. The same sweep command takes
    it (here it meets the full disk again), and sweep --resume says what to do instead of 'not a sweep folder'."""
    pytest.importorskip("ray", reason="sweeps need Ray")
    out = disk / "s"
    out.mkdir()
    (out / "sweep.lock").touch()
    fill(disk)
    assert_one_line(command("sweep", "--resume", out), f"{out} holds no sweep.json, only the lock of a sweep that "
                    "stopped before writing it: start that sweep again with the same --output (it takes this "
                    "folder).")  # fmt: skip
    assert "free some space" in command("sweep", "--recipes", "smoke", "--output", out).stderr


# --------------------------------------------------------------------------- compare on a full or read-only disk


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_compare_on_a_full_or_read_only_disk_is_one_line(disk, fault):
    fake_run(disk, "cpu-b", "cpu", 0.64)
    (fill if fault == "full" else read_only)(disk)
    cause = {"full": "the disk is full): free some space", "read-only": "the file system is read-only): remount it "
             "writable or use a folder on a writable disk"}[fault]  # fmt: skip
    done = command("compare", "--outputs", disk)
    assert_one_line(done, f"Could not write {disk / 'compare'} ({cause}, then run compare again (the runs are only "
                          "read).")  # fmt: skip
    assert json.loads((disk / "cpu-b" / "run.json").read_text())["status"] == "completed"


# --------------------------------------------------------------------------- a run whose disk fills


def test_a_run_whose_disk_fills_is_recorded_failed_not_left_running(disk, capsys):
    """The disk fills while the run's notebooks execute: run.json must say failed (as the docs say), though no new
    copy of it fits beside it: it is written in place, within the space it already holds."""
    run = interrupted_run(disk / "run")
    fill(disk)
    err = one_line_error(capsys, "run", "--resume", run.root)
    assert "(the disk is full): free some space, then continue with --resume" in err
    record = json.loads(run.manifest.read_text())
    assert record["status"] == "failed" and "the disk is full" in record["error"], record
    assert record["attempts"][-1]["status"] == "failed"


def test_write_json_never_leaves_half_a_file_on_a_full_disk(disk):
    path = disk / "small.json"
    path.write_text("{}")
    fill(disk)
    with pytest.raises(OSError):  # 8 KiB never fits in the one page the file holds
        files.write_json(path, {"x": "y" * 8192})
    assert path.read_text() == "{}"
    files.write_json(path, {"status": "failed"})  # fits: in place
    assert json.loads(path.read_text()) == {"status": "failed"}


def test_a_read_only_run_folder_is_named_as_read_only_not_full(disk, capsys):
    run = interrupted_run(disk / "run")
    read_only(disk)
    err = one_line_error(capsys, "run", "--resume", run.root)
    assert "(the file system is read-only): remount it writable or use a folder on a writable disk" in err, err
    assert "free some space" not in err


@pytest.mark.parametrize("kind, make", [("a folder", os.mkdir), ("a named pipe", os.mkfifo)])
def test_a_lock_that_is_no_file_is_named_as_what_it_is(tmp_path, kind, make):
    run = RunDir(tmp_path / "run").create()
    make(run.lock)
    message = f"{run.lock} is {kind}, where this command keeps its lock file: remove it"
    with pytest.raises(RunError, match=message), notebook_runner.locked(run):
        pass


def test_a_sweep_lock_that_is_a_folder_is_named_as_such(tmp_path):
    pytest.importorskip("ray", reason="sweeps need Ray")
    out = tmp_path / "s"
    (out / "sweep.lock").mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps({"runs": []}))
    done = command("sweep", "--resume", out)
    assert_one_line(done, f"{out / 'sweep.lock'} is a folder, where this command keeps its lock file: remove it "
                          "(nothing needs it), then run the command again.")  # fmt: skip


def test_written_path_names_the_file_not_its_temporary_copy(tmp_path):
    exc = OSError(28, "No space left on device", str(tmp_path / ".partial-0a1b2c3d-run.json"))
    assert files.written_path(exc) == str(tmp_path / "run.json")


# --------------------------------------------------------------------------- bench says what it does


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5"])
def test_bench_refuses_a_gpu_throughput_that_is_no_positive_number(value, tmp_path):
    done = command("bench", "--recipes", "cpu", f"--gpu-images-per-second={value}", "--output", tmp_path / "b.json")
    shown = f"{float(value):g}"
    assert_one_line(done, f"--gpu-images-per-second must be a finite number above 0, got {shown}: e.g. "
                          "--gpu-images-per-second 1700.")  # fmt: skip


def test_bench_on_a_cpu_skips_the_slow_recipes_unless_named_and_says_so():
    every = ["cpu", "seed", "transfer", "scratch"]
    recipes, notes = bench.choose(None, every, accelerator=False)
    assert recipes == ["cpu", "scratch"]
    assert notes == ["skipping seed (EfficientNetV2L), transfer (EfficientNetV2S at 224 px): on a CPU each takes "
                     "many minutes and several GB of memory; name it with --recipes to bench it anyway"]  # fmt: skip
    recipes, notes = bench.choose(["transfer"], every, accelerator=False)
    assert recipes == ["transfer"] and notes == ["transfer (EfficientNetV2S at 224 px) on a CPU: expect many "
                                                 "minutes and several GB of memory per recipe"]  # fmt: skip
    assert bench.choose(None, every, accelerator=True) == (every, [])


def test_bench_prints_a_line_as_each_recipe_starts_and_ends(archive, capsys):
    from cifar100_helpers import data

    bench.run(["smoke"], data.load(archive, verify=False), steps=1, warmup=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("bench 1/1 smoke: building it, then timing 1 training steps after 1 warm-up steps, again "
                             "fed one cached batch, then its input pipeline alone")  # fmt: skip
    assert "bench 1/1 smoke: " in lines[-1] and lines[-1].endswith(" images/s")


# --------------------------------------------------------------------------- command-line warts


@pytest.mark.parametrize("argv", [["run", "--recipe", "smoke"], ["tune", "--recipe", "smoke"]])
def test_set_with_an_empty_key_says_so(argv, capsys):
    err = one_line_error(capsys, *argv, "--set", "=1")
    assert err == "error: --set expects KEY=VALUE, got '=1' (its KEY is empty): e.g. --set batch_size=128.\n"


def test_sweep_set_with_an_empty_key_says_so():
    pytest.importorskip("ray", reason="sweeps need Ray")
    done = command("sweep", "--recipes", "smoke", "--set", "=1")
    assert_one_line(done, "--set expects KEY=VALUE[,VALUE...], got '=1' (its KEY is empty) (e.g. --set "
                          "learning_rate=0.1,0.2).")  # fmt: skip


def test_allow_over_budget_still_caps_epochs(tmp_path):
    out = tmp_path / "run"
    done = command("run", "--recipe", "smoke", "--epochs", "999999999999", "--allow-over-budget", "--output", out)
    assert_one_line(done, "epochs must lie in [1, 1000], got 999999999999 (--epochs N).")
    assert not out.exists()


@pytest.mark.parametrize("argv, flag", [
    (["run", "--recipe", "smoke", "--output", ""], "--output"),
    (["bench", "--recipes", "cpu", "--output", ""], "--output"),
    (["compare", "--outputs", " "], "--outputs"),
    (["run", "--resume", ""], "--resume"),
    (["run", "--recipe", "cpu", "--data", ""], "--data"),
])  # fmt: skip
def test_an_empty_path_is_refused_not_read_as_the_current_or_default_folder(argv, flag, tmp_path):
    done = subprocess.run([*CLI, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert_one_line(done, f"{flag} is empty: give a path, or leave {flag} out for its default.")
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder (nor outputs/ under it)


def test_export_of_an_empty_run_dir_is_refused(capsys):
    from cifar100_helpers.commands import cli

    assert cli.main(["export", "", "--format", "onnx"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "RUN_DIR is empty" in line
