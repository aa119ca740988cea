"""A hostile user: every bad input or accident ends in one line ``error: ...`` (exit 2), or ``interrupted: ...``
(exit 130), never a traceback and never lost work. Notebooks are replaced by stand-ins where the case is about
the pipeline around them, so these tests take seconds."""

import errno
import json
import os

import numpy as np
import pytest

from cifar100_helpers import config
from cifar100_helpers.commands import cli
from cifar100_helpers.errors import ConfigError, RunError
from cifar100_helpers.running import leaderboard, notebook_runner
from cifar100_helpers.running.run_dir import RunDir

from .test_compare import fake_run


def one_line_error(capsys, *argv) -> str:
    """Run the command line; it must exit 2 with exactly one line ``error: ...`` on stderr."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def interrupted_run(folder, cfg=None, **record) -> RunDir:
    """A run directory as a killed run leaves it: config.json, run.json with status "running"."""
    cfg = (cfg or config.make_config("smoke")).to_dict()
    run = RunDir(folder).create()
    run.config.write_text(json.dumps(cfg, indent=2))
    record = {"status": "running", "config": cfg, "completed_notebooks": [], "attempts": [], **record}
    run.manifest.write_text(json.dumps(record))
    return run


# --------------------------------------------------------------------------- 1, 10: damaged runs, compare


def test_damaged_sibling_run_is_skipped_and_named_and_unfinished_runs_are_not_listed(tmp_path, capsys):
    fake_run(tmp_path, "good", "cpu", 0.6)
    (fake_run(tmp_path, "truncated", "cpu", 0.7) / "metrics.json").write_text('{"recipe": "cpu", "top')
    (fake_run(tmp_path, "killed-in-04", "cpu", 0.8) / "run.json").write_text(json.dumps({"status": "running"}))
    incomplete = fake_run(tmp_path, "no-budget-key", "cpu", 0.5) / "metrics.json"
    incomplete.write_text(
        json.dumps({k: v for k, v in json.loads(incomplete.read_text()).items() if k != "over_budget"})
    )
    by_hand = fake_run(tmp_path, "notebooks-by-hand", "cpu", 0.4) / "run.json"  # 01-04 run in Jupyter: no status
    by_hand.write_text(json.dumps({k: v for k, v in json.loads(by_hand.read_text()).items() if k != "status"}))
    rows = leaderboard.collect(tmp_path)
    assert [r["run"] for r in rows] == ["good", "notebooks-by-hand"]
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: skipped a damaged run: ") for w in warnings)
    assert str(tmp_path / "no-budget-key" / "metrics.json") + " (no 'over_budget' entry)" in warnings[0]
    assert str(tmp_path / "truncated" / "metrics.json") + " is damaged (JSONDecodeError" in warnings[1]
    page = leaderboard.write_index(tmp_path, rows).read_text()
    assert "good/report.html" in page and "killed-in-04" not in page and "truncated" not in page


def test_run_completes_beside_a_damaged_sibling(tmp_path, fake_notebooks, capsys):
    (fake_run(tmp_path, "X", "cpu", 0.6) / "metrics.json").write_text('{"top1": 0.')
    assert cli.main(["run", "--recipe", "smoke", "--output", str(tmp_path / "new")]) == 0
    assert "warning: skipped a damaged run: " + str(tmp_path / "X" / "metrics.json") in capsys.readouterr().err
    assert json.loads((tmp_path / "new" / "run.json").read_text())["status"] == "completed"
    assert (tmp_path / "index.html").exists()


def test_compare_with_only_damaged_runs_names_them(tmp_path, capsys):
    bad = fake_run(tmp_path, "a", "cpu", 0.6) / "run.json"
    bad.write_text("{")
    err = one_line_error(capsys, "compare", "--outputs", tmp_path)
    assert "No completed runs" in err and f"skipped as damaged: {bad} is damaged (JSONDecodeError" in err


def test_failed_compare_keeps_the_previous_good_notebook(tmp_path, capsys):
    import nbformat

    fake_run(tmp_path, "good", "cpu", 0.6)
    previous = tmp_path / "compare" / notebook_runner.COMPARE_NOTEBOOK
    previous.parent.mkdir()
    previous.write_text("the last good comparison")
    broken = nbformat.read(notebook_runner.NOTEBOOK_DIR / notebook_runner.COMPARE_NOTEBOOK, as_version=4)
    broken.cells = [c for c in broken.cells if "parameters" in c.metadata.get("tags", [])]
    broken.cells.append(nbformat.v4.new_code_cell("raise ValueError('boom')"))
    nbformat.write(broken, tmp_path / notebook_runner.COMPARE_NOTEBOOK)
    err = one_line_error(capsys, "compare", "--outputs", tmp_path, "--notebooks", tmp_path)
    assert "05_compare.ipynb failed in cell" in err and "ValueError: boom" in err
    assert previous.read_text() == "the last good comparison"
    assert (tmp_path / "compare" / f"partial-{notebook_runner.COMPARE_NOTEBOOK}").exists()  # kept to read


# --------------------------------------------------------------------------- 2: resume


def test_resume_refuses_a_config_edited_since_the_run_started(tmp_path, capsys):
    run = interrupted_run(tmp_path / "run")
    edited = json.loads(run.config.read_text()) | {"recipe": "cpu", "model": "airbench", "generated": False}
    run.config.write_text(json.dumps(edited))
    err = one_line_error(capsys, "run", "--resume", run.root)
    assert f"{run.config} no longer matches the config recorded in {run.manifest} (changed: generated, recipe)" in err


@pytest.mark.parametrize(
    "flags",
    [["--epochs", "3"], ["--recipe", "cpu"], ["--set", "batch_size=4"], ["--seed", "0"], ["--data", "x.tar.gz"],
     ["--weights", "None"], ["--no-verify"], ["--deterministic"], ["--float32"], ["--allow-over-budget"],
     ["--output", "elsewhere"]],
)  # fmt: skip
def test_resume_refuses_flags_it_would_ignore(tmp_path, capsys, flags):
    run = interrupted_run(tmp_path / "run")
    err = one_line_error(capsys, "run", "--resume", run.root, *flags)
    assert f"so {flags[0]} would be ignored: drop it" in err
    assert json.loads(run.manifest.read_text())["attempts"] == []  # nothing ran


@pytest.mark.parametrize("damaged", ["config.json", "run.json"])
def test_resume_with_invalid_json_names_the_file(tmp_path, capsys, damaged):
    run = interrupted_run(tmp_path / "run")
    (run.root / damaged).write_text('{"recipe": "smo')
    err = one_line_error(capsys, "run", "--resume", run.root)
    assert f"{run.root / damaged} is damaged (JSONDecodeError" in err


# --------------------------------------------------------------------------- 3, 4: config values


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("learning_rate=nan", "learning_rate must be a finite number, got 'nan'"),
        ("learning_rate=abc", "learning_rate must be a finite number, got 'abc'"),
        ("learning_rate=inf", "learning_rate must be a finite number, got 'inf'"),
        ("learning_rate=1e999", "learning_rate must be a finite number, got inf"),
        ("learning_rate=-0.1", r"learning_rate must lie in (0, inf), got -0.1"),
        ("widths=[]", "widths must list at least one width"),
        ("widths=[0]", "each of widths must lie in [1, inf), got (0,)"),
        ("widths=abc", "widths must be a list of whole numbers"),
        ("widths=[8,16.5]", "widths must be a list of whole numbers"),
        ("flip=maybe", "flip must be True or False, got 'maybe'"),
        ("flip=1", "flip must be True or False, got 1"),
        ("mixed_precision=sometimes", "mixed_precision must be True or False"),
        ("momentum=1", "momentum must lie in [0, 1), got 1"),
        ("weight_decay=-1e-4", "weight_decay must lie in [0, inf)"),
        ("label_smoothing=1.0", "label_smoothing must lie in [0, 1)"),
        ("dropout=1", "dropout must lie in [0, 1)"),
        ("mixup=-1", "mixup must lie in [0, inf)"),
        ("cutmix=-0.5", "cutmix must lie in [0, inf)"),
        ("randaugment=1.5", "randaugment must lie in [0, 1]"),
        ("ema=1", "ema must lie in [0, 1)"),
        ("warmup_epochs=-1", "warmup_epochs must lie in [0, 1]"),
        ("warmup_epochs=2", "warmup_epochs must lie in [0, 1], got 2"),
        ("batch_size=12.5", "batch_size must be a whole number, got 12.5"),
        ("batch_size=0", "batch_size must lie in [1, inf), got 0"),
        ("crop_pad=-1", "crop_pad must lie in [0, inf)"),
        ("optimizer=adam", "optimizer must be one of sgd, adamw, rmsprop, got 'adam'"),
        ("optimizer=muon", "optimizer must be one of sgd, adamw, rmsprop, got 'muon'"),
        ("dirac=True", "Unknown parameter(s) dirac"),
        ("schedule=linear", "schedule must be one of cosine, constant"),
        ("tta=all", "tta must be one of none, flip, flip_translate, flip_grid"),
        ("model=resnet", "model must be one of airbench, seed, transfer"),
        ("recipe=cpu", "choose the recipe with --recipe cpu, not --set recipe=..."),
        ("verify=yes", "verify must be True or False"),
        ("data=5", "data must be a string or None, got 5"),
    ],
)
def test_every_config_field_is_type_and_range_checked_at_once(capsys, tmp_path, setting, message):
    err = one_line_error(capsys, "run", "--recipe", "smoke", "--output", tmp_path / "x", "--set", setting)
    assert message in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"), [("--seed", "-1", "seed must lie in"), ("--epochs", "0", "epochs")]
)
def test_seed_and_epochs_flags_are_range_checked(capsys, tmp_path, flag, value, message):
    assert message in one_line_error(capsys, "run", "--recipe", "smoke", "--output", tmp_path / "x", flag, value)
    assert not (tmp_path / "x").exists()


def test_every_recipe_passes_its_own_checks_and_a_one_epoch_run_keeps_its_warmup():
    for name in config.RECIPES:
        config.make_config(name)
    assert config.make_config("cpu", epochs=1).warmup_epochs == 1.0
    with pytest.raises(ConfigError, match="seed head needs head_filters"):
        config.make_config("seed", head_units=0)


def test_data_symlink_loop_is_one_line(capsys, tmp_path, isolated_env):
    loop = tmp_path / "loop.tar.gz"
    loop.symlink_to(loop)
    err = one_line_error(capsys, "run", "--recipe", "cpu", "--output", tmp_path / "x", "--data", loop)
    assert f"{loop} is a loop of symbolic links" in err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("command", ["run", "compare"])
def test_notebooks_folder_without_the_notebooks_fails_before_anything_starts(capsys, tmp_path, command):
    fake_run(tmp_path / "outputs", "good", "cpu", 0.6)
    where = (
        ["--output", tmp_path / "x", "--recipe", "smoke"] if command == "run" else ["--outputs", tmp_path / "outputs"]
    )
    err = one_line_error(capsys, command, *where, "--notebooks", tmp_path)
    assert f"{tmp_path} lacks " in err and "pass --notebooks the folder that holds them" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "outputs" / "compare").exists()


def test_resume_with_notebooks_folder_lacking_them_leaves_the_run_as_it_was(capsys, tmp_path):
    run = interrupted_run(tmp_path / "run")
    before = run.manifest.read_text()
    assert "lacks 01_data.ipynb" in one_line_error(capsys, "run", "--resume", run.root, "--notebooks", tmp_path)
    assert run.manifest.read_text() == before


# --------------------------------------------------------------------------- 5, 6: flags a recipe does not use


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--recipe", "smoke", "--data", "corrupt.tar.gz"], "recipe smoke trains on generated data, so --data"),
        (["--recipe", "cpu", "--weights", "w.h5"], "recipe cpu (the airbench model) has no pretrained weights"),
        (["--recipe", "scratch", "--weights", "imagenet"], "recipe scratch (the airbench model) has no pretrained"),
        (["--recipe", "smoke", "--set", "weights='imagenet'"], "recipe smoke (the airbench model) has no pretrained"),
    ],
)
def test_flags_the_recipe_does_not_use_are_refused(capsys, tmp_path, monkeypatch, flags, message):
    (tmp_path / "corrupt.tar.gz").write_bytes(b"not an archive")
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(capsys, "run", "--output", tmp_path / "x", *flags)
    assert not (tmp_path / "x").exists()


def test_weights_none_with_airbench_is_a_no_op():
    assert config.make_config("cpu", weights=None).weights is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "w.h5: no such file"),
        (b"PK\x03\x04 a zip", "w.h5 is not an HDF5 (.h5) weights file (it starts with b'PK"),
    ],
)
def test_weights_file_missing_or_not_hdf5_fails_before_any_notebook(capsys, tmp_path, fake_notebooks, content, message):
    weights = tmp_path / "w.h5"
    if content is not None:
        weights.write_bytes(content)
    err = one_line_error(capsys, "run", "--recipe", "transfer", "--output", tmp_path / "x", "--weights", weights)
    assert message in err and not (tmp_path / "x").exists() and fake_notebooks[0] == []


def test_an_hdf5_weights_file_passes_the_check(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(notebook_runner.HDF5_SIGNATURE + b"\0" * 64)
    notebook_runner.check_weights(config.make_config("transfer", weights=str(weights)))


# --------------------------------------------------------------------------- 7, 8: data checked and recorded


@pytest.mark.parametrize(
    ("member", "edit", "message"),
    [
        ("train", lambda d: d.update(data=d["data"].astype(np.float32)), "found float32 of shape (2000, 3072)"),
        ("test", lambda d: d.update(data=d["data"][:, :100]), "found uint8 of shape (500, 100)"),
        ("train", lambda d: d.update(fine_labels=[150] * len(d["fine_labels"])), "'fine_labels' has values outside"),
        ("test", lambda d: d.pop("coarse_labels"), "key 'coarse_labels' missing"),
        ("meta", lambda d: d.update(fine_label_names=d["fine_label_names"][:99]), "must list 100 names, found 99"),
        ("meta", lambda d: d.update(coarse_label_names=20), "is not in the CIFAR-100 python format"),
    ],
)
def test_bad_archive_contents_fail_before_the_run_directory_exists(
    capsys, tmp_path, isolated_env, rewrite, fake_notebooks, member, edit, message
):
    bad = rewrite(member, edit)
    err = one_line_error(capsys, "run", "--recipe", "cpu", "--data", bad, "--no-verify", "--output", tmp_path / "x")
    assert message in err and str(bad) in err
    assert not (tmp_path / "x").exists() and fake_notebooks[0] == []


def test_relative_cifar100_data_is_resolved_once_and_recorded(
    tmp_path, isolated_env, archive, monkeypatch, fake_notebooks
):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "c100.tar.gz").symlink_to(archive)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFAR100_DATA", "data/c100.tar.gz")
    run = notebook_runner.run(config.make_config("cpu", verify=False), tmp_path / "run")
    recorded = json.loads(run.config.read_text())["data"]
    assert recorded == str(tmp_path / "data" / "c100.tar.gz")
    assert json.loads(run.manifest.read_text())["config"]["data"] == recorded
    assert all(params["data_path"] == recorded for _, params in fake_notebooks[0])


def test_data_found_in_the_keras_cache_is_recorded_in_the_manifest(tmp_path, isolated_env, archive, fake_notebooks):
    cache = tmp_path / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    (cache / "cifar-100-python.tar.gz").symlink_to(archive)
    run = notebook_runner.run(config.make_config("cpu", verify=False), tmp_path / "run")
    assert json.loads(run.manifest.read_text())["data_source"] == str(cache / "cifar-100-python.tar.gz")
    assert json.loads(run.config.read_text())["data"] is None  # a resume on a fresh machine looks again


# --------------------------------------------------------------------------- 9: one process per run directory


def test_a_run_directory_in_use_is_refused(capsys, tmp_path, fake_notebooks):
    run = interrupted_run(tmp_path / "run")
    with notebook_runner.locked(run):  # as if another process were running it
        err = one_line_error(capsys, "run", "--resume", run.root)
    assert f"{run.root} is in use by pid {os.getpid()}: a run directory takes one process at a time" in err
    assert fake_notebooks[0] == []
    assert cli.main(["run", "--resume", str(run.root)]) == 0  # released: the resume goes ahead
    assert [n for n, _ in fake_notebooks[0]] == list(notebook_runner.NOTEBOOKS)


# --------------------------------------------------------------------------- 11, 12: Ctrl-C and a full disk


def test_ctrl_c_names_the_run_and_marks_it_interrupted(capsys, tmp_path, fake_notebooks):
    fake_notebooks[1]["03_train.ipynb"] = KeyboardInterrupt()
    out = tmp_path / "r"
    assert cli.main(["run", "--recipe", "smoke", "--output", str(out)]) == 130
    err = capsys.readouterr().err
    assert err == f"interrupted: finished notebooks and epochs are kept; continue with --resume {out}.\n"
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["attempts"][-1]["status"] == "interrupted"
    assert record["completed_notebooks"] == ["01_data.ipynb", "02_model.ipynb"]


def test_ctrl_c_during_bench_does_not_mention_resume(capsys, monkeypatch):
    from cifar100_helpers.commands import bench

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "load_bench_data", interrupt)
    assert cli.main(["bench"]) == 130
    assert capsys.readouterr().err == "interrupted.\n"


def test_full_disk_marks_the_run_failed_in_one_line(capsys, tmp_path, monkeypatch):
    import papermill.engines

    def no_space(nb, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill.engines, "write_ipynb", no_space)  # papermill saving the executed notebook
    out = tmp_path / "full"
    err = one_line_error(capsys, "run", "--recipe", "smoke", "--output", out)
    assert err == (
        f"error: Could not write in {out} (the disk is full): free some space, then continue with --resume {out}.\n"
    )
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "failed" and "the disk is full" in record["error"]


def test_full_disk_while_writing_the_config_says_to_start_again(capsys, tmp_path, monkeypatch):
    def no_space(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(notebook_runner, "write_atomic", no_space)
    out = tmp_path / "full"
    err = one_line_error(capsys, "run", "--recipe", "smoke", "--output", out)
    assert f"Could not write {out / 'config.json'} (the disk is full)" in err and f"then delete {out}" in err


def test_locked_run_reports_a_read_only_folder(tmp_path):
    run = RunDir(tmp_path / "gone")  # never created: the lock file cannot be opened
    with pytest.raises(RunError, match="Could not write"), notebook_runner.locked(run):
        pass
