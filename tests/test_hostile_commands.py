"""A hostile user of bench, tune, predict, export and every --output: one line ``error: ...`` (exit 2), never a
traceback, a hang or lost work. bench never benches here (bench.run is replaced by a made-up result); predict and
export use the small untrained run of test_predict_export."""

import contextlib
import errno
import importlib.util
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from PIL import Image

from cifar100_helpers.commands import bench, cli, export, tune
from cifar100_helpers.errors import TrainingDiverged
from cifar100_helpers.running import epoch_files
from cifar100_helpers.running.run_dir import RunDir

from .conftest import read_members, write_members
from .test_hostile import one_line_error
from .test_predict_export import run_cli, run_dir  # noqa: F401 (run_dir: a fixture)

LONG = "a" * 300  # more than the 255 bytes a name may have on common file systems
UNWRITABLE = Path("/sys/bench.json")  # sysfs: nobody creates files there, not even root


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: an exception (not an OSError, which the code under test may catch) after
    ``seconds``."""

    class Hung(Exception):
        pass

    def stop(signum, frame):
        raise Hung(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- 6: bench keeps its results


@pytest.fixture
def fake_bench(monkeypatch) -> list:
    """bench without benching: bench.run returns one made-up row at once; its calls are recorded."""
    calls = []
    row = {"recipe": "cpu", "parameters": 1000, "global_batch_size": 8, "train_images_per_second": 10.0,
           "input_pipeline_images_per_second": 50.0, "input_pipeline_images_per_second_per_core": 25.0,
           "pipeline_to_train_ratio": 5.0, "projected_10_epoch_minutes": 750.0, "ratio_to_seed": None,
           "training_gflop_per_image": 1.0, "achieved_gflops": 10.0, "peak_gflops": 100.0, "peak_share": 0.1,
           "peak_how": "2 logical CPUs x 2.50 GHz x 20 FLOP/cycle", "input_wait_share": 0.25}  # fmt: skip
    result = {"hardware": {"cpu": "a CPU", "cpu_cores": 2, "gpus": []}, "steps": 1, "recipes": [row]}
    monkeypatch.setattr(bench, "load_bench_data", lambda *args: None)
    monkeypatch.setattr(bench, "run", lambda *args, **kwargs: calls.append(args) or result)
    return calls


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("under-a-file", "is a file, not a folder"),
        ("a-folder", "is a folder: pass a file name inside it"),
        ("too-long", "this file system allows: choose a shorter name"),
        ("sysfs", "cannot write in /sys (Permission denied)"),
    ],
)
def test_bench_refuses_an_output_it_cannot_write_before_benching(capsys, tmp_path, fake_bench, where, message):
    if where == "sysfs" and not UNWRITABLE.parent.is_dir():
        pytest.skip("no /sys here")
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    output = {"under-a-file": tmp_path / "file" / "bench.json", "a-folder": tmp_path / "folder",
              "too-long": tmp_path / f"{LONG}.json", "sysfs": UNWRITABLE}[where]  # fmt: skip
    err = one_line_error(capsys, "bench", "--recipes", "cpu", "--output", output)
    assert err.startswith("error: --output") and message in err
    assert fake_bench == []  # refused before benching


def test_bench_prints_its_table_even_when_saving_fails(capsys, tmp_path, fake_bench, monkeypatch):
    def read_only(result, path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(bench, "save", read_only)
    output = tmp_path / "bench.json"
    assert cli.main(["bench", "--recipes", "cpu", "--output", str(output)]) == 2
    out, err = capsys.readouterr()
    assert "| cpu | 1,000 | 8 | 10.0 |" in out
    assert err == f"error: Could not save {output} (Read-only file system): the table above is the result.\n"


# --------------------------------------------------------------------------- 8: names too long, files in the way

NEEDS_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="sweeps need Ray: pip install .[sweep]")


@pytest.mark.parametrize(
    "argv",
    [["run", "--recipe", "smoke"], ["tune", "--recipe", "smoke"], pytest.param(["sweep", "--recipes", "smoke"],
     marks=NEEDS_RAY), ["gpu-check"]],
)  # fmt: skip
def test_an_output_name_too_long_is_one_line(capsys, tmp_path, argv):
    err = one_line_error(capsys, *argv, "--output", tmp_path / LONG / "x")
    assert "--output: the name aaaaaaaaaaaaaaaaaaaaaaaa... is 300 bytes, more than the" in err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("argv", "flag"),
    [(["predict", "LONG", "x.png"], "RUN_DIR"), (["export", "LONG", "--format", "onnx"], "RUN_DIR"),
     (["run", "--resume", "LONG"], "--resume"), (["compare", "--outputs", "LONG"], "--outputs"),
     (["run", "--recipe", "transfer", "--weights", "LONG"], "--weights"),
     (["run", "--recipe", "smoke", "--notebooks", "LONG"], "--notebooks"),
     pytest.param(["sweep", "--resume", "LONG"], "--resume", marks=NEEDS_RAY)],
)  # fmt: skip
def test_a_path_too_long_to_read_is_one_line_naming_its_option(capsys, tmp_path, monkeypatch, argv, flag):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, *[LONG if a == "LONG" else a for a in argv])
    assert err.startswith(f"error: {flag} {tmp_path / LONG}") and ": File name too long (names hold at most" in err


def test_export_and_predict_names_too_long_are_one_line(capsys, tmp_path, run_dir):  # noqa: F811
    err = one_line_error(capsys, "export", run_dir, "--format", "tflite", "--output", tmp_path / f"{LONG}.tflite")
    assert "is 307 bytes, more than the" in err
    err = one_line_error(capsys, "predict", run_dir, tmp_path / f"{LONG}.png")
    assert f"{tmp_path / LONG}.png: File name too long. Check the path." in err


def test_tune_output_that_is_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "t").write_text("notes")
    assert f"--output {tmp_path / 't'} is a file: pass a new folder name." in one_line_error(
        capsys, "tune", "--recipe", "smoke", "--output", tmp_path / "t"
    )
    assert (tmp_path / "t").read_text() == "notes"


def test_export_to_a_legal_255_byte_name(capsys, tmp_path, run_dir):  # noqa: F811
    output = tmp_path / ("m" * 248 + ".tflite")
    code, out, err = run_cli(capsys, "export", run_dir, "--format", "tflite", "--output", output)
    assert code == 0, err
    assert output.is_file() and os.listdir(tmp_path) == [output.name]  # no staging folder left


def test_export_removes_the_staging_folders_of_killed_exports(capsys, tmp_path, run_dir):  # noqa: F811
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = tmp_path / f"{export.staging_prefix(int(gone.stdout))}x1"  # as an export killed by SIGKILL leaves it
    running = tmp_path / f"{export.staging_prefix(os.getppid())}x2"  # an export still at work
    for folder in (killed, running):
        folder.mkdir()
        (folder / "saved_model.pb").write_text("")
    code, _, err = run_cli(capsys, "export", run_dir, "--format", "tflite", "--output", tmp_path / "m.tflite")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path)) == sorted(["m.tflite", running.name])


def test_tflite_export_prints_no_deprecation_warning(capfd, tmp_path, run_dir, monkeypatch):  # noqa: F811
    """Without ai-edge-litert the check runs on tf.lite.Interpreter, which warns in six lines that it is
    deprecated: the check chose it knowingly, so the user is not told."""
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ai_edge_litert" else real(name, *a)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_cli(capfd, "export", run_dir, "--format", "tflite", "--output", tmp_path / "m.tflite")
    assert code == 0 and "Checked with tensorflow (tf.lite)" in out, err
    assert [str(w.message) for w in caught if "tf.lite" in str(w.message)] == []
    assert "XNNPACK" not in err and "tf.lite" not in err  # the C++ runtime's line too (file descriptor 2)


# --------------------------------------------------------------------------- 9: predict on awkward folders


def test_predict_skips_pipes_and_truncated_images_and_predicts_the_rest(capsys, tmp_path, run_dir, first20):  # noqa: F811
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(first20[0][0]).save(folder / "a.png")
    Image.fromarray(first20[0][1]).resize((256, 256)).save(folder / "b.jpg", quality=95)
    (folder / "c_cut.jpg").write_bytes((folder / "b.jpg").read_bytes()[:2000])  # a download cut short
    os.mkfifo(folder / "d_pipe")
    with deadline(120):
        code, out, err = run_cli(capsys, "predict", run_dir, folder)
    assert code == 0, err
    assert out.startswith("2 image(s)") and "a.png" in out and "b.jpg" in out
    assert f"note: skipped {folder / 'c_cut.jpg'} (truncated or unreadable image)\n" in err
    assert f"note: skipped {folder / 'd_pipe'} (not a regular file)\n" in err
    assert err.count("\n") == 2
    with deadline(60):
        err = one_line_error(capsys, "predict", run_dir, folder / "d_pipe")
    assert "d_pipe: not a regular file" in err


def test_predict_reads_a_large_image_without_warning(capsys, tmp_path, run_dir, first20, monkeypatch):  # noqa: F811
    """Pillow warns about images over MAX_IMAGE_PIXELS (and refuses those over twice that): a large photo is
    read quietly, shrunk while decoding."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)
    Image.fromarray(first20[0][0]).resize((50, 50)).save(tmp_path / "large.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_cli(capsys, "predict", run_dir, tmp_path / "large.png")
    assert code == 0 and out.startswith("1 image(s)") and err == "", err
    assert [w.category.__name__ for w in caught if issubclass(w.category, Image.DecompressionBombWarning)] == []


# --------------------------------------------------------------------------- 10: tune keeps to its own folders


def test_tune_refuses_to_write_into_a_run_directory(capsys, tmp_path, fake_notebooks):  # noqa: F811
    run = tmp_path / "run"
    assert cli.main(["run", "--recipe", "smoke", "--output", str(run)]) == 0
    capsys.readouterr()  # its warning about the stand-in notebooks' missing metrics
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    err = one_line_error(capsys, "tune", "--recipe", "smoke", "--output", run)
    assert f"{run} is a run directory (made by `run`): tune never writes into one; choose a new --output." in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_tune_refuses_a_folder_it_did_not_make(capsys, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("")
    err = one_line_error(capsys, "tune", "--recipe", "smoke", "--output", tmp_path / "mine")
    assert "holds other files and no tune's config.json" in err
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]


@pytest.mark.parametrize("epochs_done", [0, 1])
def test_a_failed_tune_leaves_no_half_made_folder(capsys, tmp_path, monkeypatch, epochs_done):
    """A tune that fails before its first epoch is saved removes the folder it created; one that saved an epoch
    keeps it, for the same command to continue."""

    def diverge(model, ds, cfg, run, **kwargs):
        if epochs_done:
            run.resume_state.parent.mkdir(parents=True)
            run.resume_state.write_text("{}")
        raise TrainingDiverged("The loss became NaN or infinite at epoch 1.")

    monkeypatch.setattr(epoch_files, "train", diverge)
    out = tmp_path / "tuning" / "t"
    assert "The loss became NaN" in one_line_error(capsys, "tune", "--recipe", "smoke", "--output", out)
    assert out.exists() == bool(epochs_done)


# --------------------------------------------------------------------------- data errors name the file


@pytest.fixture
def damaged_folder(archive, tmp_path) -> Path:
    """The generated archive extracted to a folder, its train member no pickle at all."""
    members = read_members(archive)
    folder = tmp_path / "c100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, member in members.items():
        (folder / name).write_bytes(pickle.dumps(member, protocol=2))
    (folder / "train").write_text("garbage")
    return folder


@pytest.mark.parametrize("argv", [["bench", "--recipes", "cpu", "--data"], ["tune", "--recipe", "cpu", "--data"],
                                  ["run", "--recipe", "cpu"]])  # fmt: skip
def test_a_damaged_data_folder_is_named(capsys, tmp_path, isolated_env, monkeypatch, damaged_folder, argv):
    if argv[-1] == "--data":
        argv = [*argv, damaged_folder.parent]
    else:
        monkeypatch.setenv("CIFAR100_DATA", str(damaged_folder.parent))
    err = one_line_error(capsys, *argv, "--no-verify", "--output", tmp_path / "out")
    assert f"{damaged_folder / 'train'}: not a readable pickle" in err
    assert not (tmp_path / "out").exists()


def test_bench_names_the_archive_whose_contents_are_bad(capsys, tmp_path, archive):
    members = read_members(archive)
    members["train"]["fine_labels"] = [150] * len(members["train"]["fine_labels"])
    bad = write_members(tmp_path / "bad.tar.gz", {k: pickle.dumps(v, protocol=2) for k, v in members.items()})
    err = one_line_error(
        capsys, "bench", "--recipes", "cpu", "--data", bad, "--no-verify", "--output", tmp_path / "b.json"
    )
    assert f"{bad}: train: 'fine_labels' has values outside 0..99" in err


def test_tune_continues_its_own_folder(tmp_path):
    """The documented behaviour stays: an existing tune folder (its config.json, a run.json of training details)
    is accepted."""
    folder = RunDir(tmp_path / "t").create()
    folder.config.write_text("{}")
    folder.manifest.write_text(json.dumps({"training": {}}))
    assert tune.check_folder(folder.root) == folder.root
