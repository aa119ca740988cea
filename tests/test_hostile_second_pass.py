"""The second hostile pass (issue: 115 bad inputs and faults): each case that was a defect, as it was
reported, now ending clean: one line, the right exit code, nothing lost, no half-written file."""

import errno
import json
import math
import os
import subprocess
import sys
import tarfile

import nbformat
import pytest

from cifar100_helpers import config, data
from cifar100_helpers.commands import cli
from cifar100_helpers.files import replacing, write_atomic
from cifar100_helpers.running import leaderboard, notebook_runner
from cifar100_helpers.running.run_dir import RunDir

from .test_compare import fake_run


def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


# --------------------------------------------------------------------------- 5: resume after a full disk


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    target.write_text("{}")
    monkeypatch.setattr("pathlib.Path.write_text", full_disk)
    with pytest.raises(OSError):
        write_atomic(target, '{"status": "running"}')
    monkeypatch.undo()
    assert target.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_generated_data_cut_short_by_a_full_disk_is_written_again_on_resume(tmp_path, monkeypatch):
    cfg, run = config.make_config("smoke"), RunDir(tmp_path / "run").create()
    real_addfile = tarfile.TarFile.addfile
    calls = []

    def fill_the_disk(self, info, fileobj=None):  # the first member is written, then the disk is full
        calls.append(info.name)
        if len(calls) > 1:
            full_disk()
        return real_addfile(self, info, fileobj)

    monkeypatch.setattr(tarfile.TarFile, "addfile", fill_the_disk)
    with pytest.raises(OSError):
        data.load_for(cfg, run)
    assert not run.generated_data.exists() and list(run.generated_data.parent.iterdir()) == []
    monkeypatch.undo()  # space freed: the resumed 01 writes the whole archive and reads it
    assert len(data.load_for(cfg, run).train) > 0


def test_replacing_removes_a_partial_folder_too(tmp_path):
    with pytest.raises(OSError), replacing(tmp_path / "export" / "savedmodel") as partial:
        partial.mkdir()
        (partial / "saved_model.pb").write_text("half")
        full_disk()
    assert list((tmp_path / "export").iterdir()) == []


# --------------------------------------------------------------------------- 7, 12: damaged metrics of other runs


def damage(run, **fields):
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, **fields}))  # json writes NaN as NaN


@pytest.mark.parametrize("fields", [{"top1": math.nan}, {"top5": math.inf}, {"top1_ci95": [0.1, math.nan]}])
def test_a_non_finite_metric_in_another_run_skips_that_run(tmp_path, fake_notebooks, capsys, fields):
    fake_run(tmp_path, "a", "cpu", 0.6, seed=0)
    damage(fake_run(tmp_path, "b", "cpu", 0.62, seed=1), **fields)
    assert cli.main(["run", "--recipe", "smoke", "--output", str(tmp_path / "new")]) == 0
    err = capsys.readouterr().err
    assert f"warning: skipped a damaged run: {tmp_path / 'b' / 'metrics.json'}" in err and "finite" in err
    assert json.loads((tmp_path / "new" / "run.json").read_text())["status"] == "completed"
    assert "<td>1</td>" not in (tmp_path / "index.html").read_text()  # the group of seeds counts only run a


@pytest.mark.parametrize("content", ["[1, 2]", '{"recipe": "cpu", "epochs": "10", "top1": "0.5"}'])
def test_compare_names_each_skipped_run_in_the_terminal(tmp_path, capsys, monkeypatch, content):
    fake_run(tmp_path, "good", "cpu", 0.6)
    (fake_run(tmp_path, "bad", "cpu", 0.6) / "metrics.json").write_text(content)
    monkeypatch.setattr(notebook_runner, "execute", lambda *a, **k: None)  # notebook 05 itself is not the case here
    monkeypatch.setattr(notebook_runner, "export_html", lambda *a: a[2])
    monkeypatch.setattr(notebook_runner.os, "replace", lambda *a: None)
    assert cli.main(["compare", "--outputs", str(tmp_path)]) == 0
    assert f"warning: skipped a damaged run: {tmp_path / 'bad' / 'metrics.json'}" in capsys.readouterr().err


def test_group_statistics_never_see_a_non_finite_value(tmp_path):
    fake_run(tmp_path, "a", "cpu", 0.6, seed=0)
    damage(fake_run(tmp_path, "b", "cpu", 0.6, seed=1), top1_tta=math.nan)
    groups = leaderboard.group_runs(leaderboard.collect(tmp_path))
    assert [g["n"] for g in groups] == [1]


# --------------------------------------------------------------------------- minor: noise on success


def test_no_ipython_warning_per_notebook_when_home_is_not_writable(tmp_path):
    notebook = tmp_path / "nb" / "one.ipynb"
    notebook.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), notebook)
    script = (
        "from pathlib import Path; from cifar100_helpers.running import notebook_runner\n"
        "with notebook_runner.current_interpreter_kernel() as kernel:\n"
        f"    notebook_runner.execute('one.ipynb', Path({str(tmp_path)!r}), {{}}, kernel,\n"
        f"                            Path({str(notebook.parent)!r}))\n"
    )
    env = {**os.environ, "HOME": str(tmp_path / "no-such-home")}
    env.pop("IPYTHONDIR", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "42" in (tmp_path / "one.ipynb").read_text() and "writable" not in done.stderr, done.stderr
