"""The third hostile pass (issue 28, items 3, 4, 5, 9 and the reading warts): every file a command reads from the
user goes through files.py (regular files only, bounded size and nesting) and every user path through
resolve_path, so a named pipe, deeply nested JSON, a symlink loop or an unusable home ends in one line, exit 2,
never a hang or a traceback. Commands run as the user runs them, in a subprocess with a timeout, so a hang fails."""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from cifar100_helpers import config, generated_data
from cifar100_helpers.commands import cli
from cifar100_helpers.running import leaderboard, notebook_runner

from .conftest import REPO
from .test_compare import fake_run
from .test_hostile import interrupted_run, one_line_error
from .test_hostile_commands import deadline

NEEDS_RAY = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="sweeps need Ray (the [sweep] extra)")
NESTED = "[" * 200_000 + "]" * 200_000  # RecursionError in json.loads, were it not caught


def command(*argv, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    """``python -m cifar100_helpers ARGV`` as the user runs it; a hang fails the test after ``timeout`` seconds."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "cifar100_helpers", *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=environment, cwd=REPO)  # fmt: skip


def one_line(done: subprocess.CompletedProcess) -> str:
    """The one ``error: ...`` line of a command that exited 2 (nothing else on stderr, no traceback)."""
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def fifo(path):
    os.mkfifo(path)
    return path


def loop(path):
    path.symlink_to(path)
    return path


def model_run(folder, model: bytes | None = None):
    """A run directory predict accepts up to loading the model: config.json and a model.keras zip (not a model)."""
    run = interrupted_run(folder, status="completed")
    with zipfile.ZipFile(run.model, "w") as z:
        z.writestr("config.json", "{}")
    if model is not None:
        run.model.write_bytes(model)
    return run


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "cat.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------- 3: named pipes never block


def test_resume_with_config_json_a_named_pipe(tmp_path):
    run = interrupted_run(tmp_path / "run")
    run.config.unlink()
    fifo(run.config)
    assert f"{run.config} is a named pipe" in one_line(command("run", "--resume", run.root))


def test_data_a_named_pipe_fails_before_the_run_directory_exists(tmp_path):
    err = one_line(command("run", "--recipe", "cpu", "--output", tmp_path / "x", "--data", fifo(tmp_path / "d.tgz")))
    assert f"{tmp_path / 'd.tgz'} is a named pipe, not an archive" in err and not (tmp_path / "x").exists()


def test_tune_with_cifar100_data_a_named_pipe(tmp_path):
    done = command("tune", "--recipe", "cpu", "--output", tmp_path / "t", env={"CIFAR100_DATA": fifo(tmp_path / "p")})
    assert f"{tmp_path / 'p'} is a named pipe" in one_line(done) and not (tmp_path / "t").exists()


def test_compare_skips_a_sibling_whose_metrics_are_a_named_pipe(tmp_path):
    metrics = fake_run(tmp_path, "piped", "cpu", 0.6) / "metrics.json"
    metrics.unlink()
    fifo(metrics)
    assert f"skipped as damaged: {metrics} is a named pipe" in one_line(command("compare", "--outputs", tmp_path))


@pytest.mark.parametrize("name", ["metrics.json", "run.json", "history.csv"])
def test_a_run_completes_and_indexes_beside_a_sibling_with_a_named_pipe(tmp_path, fake_notebooks, capsys, name):
    piped = fake_run(tmp_path, "piped", "cpu", 0.6) / name
    piped.unlink()
    fifo(piped)
    with deadline(30):
        assert cli.main(["run", "--recipe", "smoke", "--output", str(tmp_path / "new")]) == 0
    assert f"warning: skipped a damaged run: {piped} is a named pipe" in capsys.readouterr().err
    assert json.loads((tmp_path / "new" / "run.json").read_text())["status"] == "completed"


@NEEDS_RAY
def test_sweep_resume_with_sweep_json_a_named_pipe(tmp_path):
    (tmp_path / "sweep").mkdir()
    fifo(tmp_path / "sweep" / "sweep.json")
    assert "sweep.json is a named pipe" in one_line(command("sweep", "--resume", tmp_path / "sweep"))


# --------------------------------------------------------------------------- 4: deeply nested JSON


def test_compare_names_a_sibling_of_deeply_nested_json(tmp_path):
    (fake_run(tmp_path, "deep", "cpu", 0.6) / "metrics.json").write_text(NESTED)
    assert f"{tmp_path / 'deep' / 'metrics.json'} is damaged (nested more than" in one_line(
        command("compare", "--outputs", tmp_path)
    )


def test_a_run_beside_a_deeply_nested_sibling_completes(tmp_path, fake_notebooks, capsys):
    (fake_run(tmp_path, "deep", "cpu", 0.6) / "run.json").write_text(NESTED)
    (fake_run(tmp_path, "deep-but-parsed", "cpu", 0.6) / "metrics.json").write_text(
        '{"a": ' + "[" * 500 + "]" * 500 + "}"
    )
    assert cli.main(["run", "--recipe", "smoke", "--output", str(tmp_path / "new")]) == 0
    err = capsys.readouterr().err
    assert f"skipped a damaged run: {tmp_path / 'deep' / 'run.json'} is damaged (nested more than 64" in err
    assert f"skipped a damaged run: {tmp_path / 'deep-but-parsed' / 'metrics.json'} is damaged (nested" in err
    assert json.loads((tmp_path / "new" / "run.json").read_text())["status"] == "completed"


def test_resume_and_predict_name_a_deeply_nested_config(tmp_path, image):
    run = model_run(tmp_path / "run")
    run.config.write_text(NESTED)
    assert f"{run.config} is damaged (nested more than 64" in one_line(command("predict", run.root, image))
    run.manifest.write_text(json.dumps({"status": "running", "config": {}}))
    assert f"{run.config} is damaged (nested more than 64" in one_line(command("run", "--resume", run.root))


# --------------------------------------------------------------------------- 5: symlink loops, dangling links


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--resume", "{}"],
        ["predict", "{}", "image.png"],
        ["compare", "--outputs", "{}"],
        pytest.param(["sweep", "--resume", "{}"], marks=NEEDS_RAY),
    ],
)
def test_a_symlink_loop_as_a_folder_is_named(tmp_path, argv):
    link = loop(tmp_path / "loop")
    err = one_line(command(*(a.format(link) for a in argv)))
    assert f"{link} is a symlink loop" in err and "RuntimeError" not in err


def test_export_names_a_symlink_loop(tmp_path, capsys):
    err = one_line_error(capsys, "export", loop(tmp_path / "loop"), "--format", "tflite")
    assert f"{tmp_path / 'loop'} is a symlink loop" in err


def test_a_dangling_link_is_named_as_such_not_as_a_file(tmp_path, capsys):
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")
    err = one_line(command("run", "--resume", tmp_path / "dangling"))
    assert f"{tmp_path / 'dangling'} is a dangling link (to {tmp_path / 'gone'}, which does not exist)" in err
    err = one_line_error(capsys, "run", "--recipe", "smoke", "--output", tmp_path / "dangling")
    assert "is a dangling link" in err and "is a file" not in err
    err = one_line_error(capsys, "run", "--recipe", "smoke", "--output", loop(tmp_path / "loop"))
    assert f"{tmp_path / 'loop'} is a symlink loop" in err and "is a file" not in err


# --------------------------------------------------------------------------- 9: an unusable home


def test_notebook_kernels_start_with_an_unusable_home():
    script = (
        "from jupyter_client.kernelspec import KernelSpecManager\n"
        "from jupyter_core.paths import jupyter_runtime_dir\n"
        "from IPython.paths import get_ipython_dir\n"
        "from cifar100_helpers.running import notebook_runner\n"
        "with notebook_runner.current_interpreter_kernel() as kernel:\n"
        "    KernelSpecManager().get_kernel_spec(kernel)\n"
        "    print(get_ipython_dir(), jupyter_runtime_dir())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("IPYTHONDIR", "JUPYTER_RUNTIME_DIR")}
    done = subprocess.run([sys.executable, "-c", script], env={**env, "HOME": "/proc"}, capture_output=True,
                          text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert done.returncode == 0 and "/proc" not in done.stdout, done.stderr


@pytest.mark.slow  # executes notebook 05
def test_compare_with_home_unusable(tmp_path):
    fake_run(tmp_path, "a", "cpu", 0.6)
    fake_run(tmp_path, "b", "seed", 0.5)
    done = command("compare", "--outputs", tmp_path, env={"HOME": "/proc"}, timeout=300)
    assert done.returncode == 0 and (tmp_path / "compare" / "report.html").exists(), done.stderr


# --------------------------------------------------------------------------- reading warts


def test_out_of_range_metrics_are_skipped_with_a_warning(tmp_path, capsys):
    fake_run(tmp_path, "good", "cpu", 0.6)
    bad = fake_run(tmp_path, "huge", "cpu", 1e308)  # was listed as "inf%"
    rows = leaderboard.collect(tmp_path)
    assert [r["run"] for r in rows] == ["good"] and "inf%" not in leaderboard.leaderboard(rows)
    err = capsys.readouterr().err
    assert f"skipped a damaged run: {bad / 'metrics.json'} or " in err and "fractions from 0 to 1" in err


def test_a_damaged_history_csv_is_named(tmp_path, capsys):
    fake_run(tmp_path, "good", "cpu", 0.6)
    (fake_run(tmp_path, "odd", "cpu", 0.6) / "history.csv").write_text("epoch,loss,seconds\n1,1.0,inf\n")
    assert [r["run"] for r in leaderboard.collect(tmp_path)] == ["good"]
    assert f"skipped a damaged run: {tmp_path / 'odd' / 'history.csv'} is damaged" in capsys.readouterr().err


def test_a_symlinked_alias_of_a_run_is_listed_once(tmp_path):
    fake_run(tmp_path, "run", "cpu", 0.6)
    (tmp_path / "alias").symlink_to(tmp_path / "run")
    (tmp_path / "also").symlink_to("run")
    assert [r["run"] for r in leaderboard.collect(tmp_path)] == ["run"]


def test_predict_says_a_truncated_model_is_truncated(tmp_path, image):
    run = model_run(tmp_path / "run")
    run.model.write_bytes(run.model.read_bytes()[:40])
    err = one_line(command("predict", run.root, image))
    assert f"{run.model} is damaged or truncated" in err and "File not found" not in err


@pytest.mark.parametrize("argv", [["predict", "", "{image}"], ["predict", "{run}", ""]])
def test_predict_refuses_an_empty_path(tmp_path, image, argv):
    run = model_run(tmp_path / "run")
    err = one_line(command(*(a.format(image=image, run=run.root) for a in argv), timeout=60))
    assert "is an empty path" in err


def test_predict_without_tensorflow_is_one_line(tmp_path, image):
    broken = tmp_path / "site" / "tensorflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('libtensorflow_framework.so.2: cannot open shared object')")
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO)])}
    assert "no such run directory" in one_line(command("predict", tmp_path / "nothing", image, env=env))
    err = one_line(command("predict", model_run(tmp_path / "run").root, image, env=env))
    assert "TensorFlow cannot be imported" in err


def test_a_ten_image_archive_fails_before_the_run_starts(tmp_path, capsys, rewrite, fake_notebooks):
    def keep_ten(train):
        for key in ("data", "fine_labels", "coarse_labels", "filenames"):
            train[key] = train[key][:10]

    archive = rewrite("train", keep_ten)
    argv = ["run", "--recipe", "cpu", "--data", archive, "--no-verify", "--output", tmp_path / "x"]
    err = one_line_error(capsys, *argv)
    assert "holds 10 training and 500 test images (CIFAR-100 has 50,000 and 10,000)" in err
    assert not (tmp_path / "x").exists() and fake_notebooks[0] == []


def test_a_file_that_is_no_archive_is_one_line(tmp_path, capsys, isolated_env):
    (tmp_path / "notes.txt").write_text("not an archive\n" * 100)
    argv = ["run", "--recipe", "cpu", "--data", tmp_path / "notes.txt", "--no-verify", "--output", tmp_path / "x"]
    assert "(not a tar archive (gzip, bzip2, xz or plain))" in one_line_error(capsys, *argv)


def test_resume_of_a_tune_folder_says_how_to_continue_a_tune(tmp_path, capsys):
    folder = tmp_path / "tuning" / "cpu-1"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config.make_config("cpu").to_dict()))
    (folder / "run.json").write_text(json.dumps({"training": {"kind": "cpu"}}))  # what training writes in a tune
    err = one_line_error(capsys, "run", "--resume", folder)
    assert "a `tune` folder" in err and f"tune --output {folder}" in err and "no longer matches" not in err


def test_generated_data_still_passes_the_up_front_checks(archive):
    for recipe in ("cpu", "scratch", "seed"):
        cfg = config.make_config(recipe, data=str(archive), verify=False)
        assert notebook_runner.check_data(cfg) == archive
    assert len(generated_data.FINE_NAMES) == 100


def test_predict_names_an_image_that_is_a_symlink_loop(tmp_path):
    err = one_line(command("predict", model_run(tmp_path / "run").root, loop(tmp_path / "loop.png")))
    assert f"{tmp_path / 'loop.png'}: not a regular file (a symlink loop)" in err
