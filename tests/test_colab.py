"""Colab: Google Drive as the default home of run directories (with google.colab faked), the one-line
"run NN first" errors, the set-up cells, and 00_colab.ipynb run end to end through papermill."""

import ast
import json
import sys
import types
import urllib.request
from pathlib import Path

import nbformat
import pytest
from papermill.exceptions import PapermillExecutionError

from cifar100_helpers import config
from cifar100_helpers.errors import RunError
from cifar100_helpers.running import colab, notebook_runner
from cifar100_helpers.running.run_dir import RunDir

NOTEBOOKS = sorted(notebook_runner.NOTEBOOK_DIR.glob("0*.ipynb"))
REPO_URL = "https://github.com/cifar100-study/cifar100-10-epochs"


@pytest.fixture
def local(monkeypatch, tmp_path):
    """Not in Colab, working in an empty folder."""
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A Colab kernel: google.colab imported, Drive mounted under tmp_path by ``drive.mount`` unless
    ``fake.refuse`` holds the exception Colab raises when the user declines."""
    fake = types.ModuleType("google.colab")
    fake.mounted, fake.refuse, fake.served = [], None, []

    def mount(mountpoint):
        if fake.refuse:
            raise fake.refuse
        fake.mounted.append(mountpoint)
        (tmp_path / "drive" / "MyDrive").mkdir(parents=True, exist_ok=True)

    fake.drive = types.SimpleNamespace(mount=mount)
    fake.output = types.SimpleNamespace(
        serve_kernel_port_as_window=lambda port, path="/", anchor_text=None: fake.served.append(("window", port, path)),
        serve_kernel_port_as_iframe=lambda port, path="/", height=400: fake.served.append(("iframe", port, path)),
    )
    monkeypatch.setitem(sys.modules, "google.colab", fake)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.chdir(tmp_path)
    return fake


def test_default_run_dir_is_on_drive_only_in_colab_with_drive_mounted(tmp_path):
    drive = tmp_path / "MyDrive"
    assert colab.default_run_dir(False, None) == colab.default_run_dir(False, drive) == Path("outputs/notebook-run")
    assert colab.default_run_dir(True, None) == Path("outputs/notebook-run")
    assert colab.default_run_dir(True, drive) == drive / "cifar100-10-epochs" / "notebook-run"
    assert colab.outputs_folder(True, drive) == drive / "cifar100-10-epochs"


def test_outside_colab_nothing_is_mounted_and_runs_stay_local(local, capsys):
    assert not colab.in_colab() and colab.mount_drive() is None
    run = colab.run_dir(None)
    assert run.root == local / "outputs" / "notebook-run" and run.figures.is_dir()
    assert capsys.readouterr().out == f"run_dir: {run.root}\n"
    assert colab.run_dir("elsewhere").root == local / "elsewhere"  # an explicit run_dir is used as given
    assert colab.outputs_dir() == Path("outputs") and colab.outputs_dir("x") == Path("x")


def test_in_colab_drive_is_mounted_and_becomes_the_default(fake_colab, tmp_path, capsys):
    assert colab.in_colab()
    assert colab.mount_drive() == tmp_path / "drive" / "MyDrive"
    assert fake_colab.mounted == [str(tmp_path / "drive")]
    assert "runs go to" in capsys.readouterr().out
    run = colab.run_dir(None)
    assert run.root == tmp_path / "drive" / "MyDrive" / "cifar100-10-epochs" / "notebook-run" and run.root.is_dir()
    assert colab.outputs_dir() == tmp_path / "drive" / "MyDrive" / "cifar100-10-epochs"
    assert colab.run_dir(str(tmp_path / "given")).root == tmp_path / "given"  # papermill's run_dir wins


@pytest.mark.parametrize("refusal", [Exception("credential propagation was\nunsuccessful"), TimeoutError()])
def test_in_colab_a_refused_mount_says_in_one_line_that_files_are_lost_with_the_runtime(
    fake_colab, refusal, tmp_path, capsys
):
    fake_colab.refuse = refusal
    assert colab.mount_drive() is None
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("Google Drive is not mounted (")
    assert "local disk" in line and "lost with the runtime" in line and "00_colab.ipynb" in line
    assert ("unsuccessful" in line) if str(refusal) else ("TimeoutError" in line)
    assert colab.run_dir(None).root == tmp_path / "outputs" / "notebook-run"


def test_require_names_the_notebook_to_run_first(tmp_path):
    run = RunDir(tmp_path).create()
    with pytest.raises(RunError, match=r"^model_untrained.keras is not in .*: run 02_model.ipynb first, with the same"):
        run.require(run.untrained_model, "02_model.ipynb")
    run.model.write_text("x")
    assert run.require(run.model, "03_train.ipynb") == run.model


@pytest.mark.parametrize(
    ("notebook", "missing", "producer"),
    [
        ("03_train.ipynb", "model_untrained.keras", "02_model.ipynb"),
        ("04_results.ipynb", "model.keras", "03_train.ipynb"),
    ],
)
def test_notebook_without_its_input_fails_in_one_line_and_papermill_still_stops(tmp_path, notebook, missing, producer):
    run = RunDir(tmp_path / "empty").create()
    params = notebook_runner.notebook_parameters(config.make_config("smoke"), run)
    with notebook_runner.current_interpreter_kernel() as kernel, pytest.raises(RunError) as err:
        notebook_runner.execute(notebook, run, params, kernel, notebook_runner.NOTEBOOK_DIR)
    assert f"{notebook} failed in cell" in str(err.value)
    assert f"(RunError: {missing} is not in {run.root}: run {producer} first, with the same run_dir" in str(err.value)
    executed = nbformat.read(run.notebook(notebook), as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", []) if o.output_type == "error"]
    (error,) = errors
    assert error.ename == "RunError" and len(error.traceback) == 1  # one line, not a traceback
    assert error.traceback[0] == f"RunError: {error.evalue}"


def test_one_line_errors_leave_other_exceptions_alone(tmp_path):
    source = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from cifar100_helpers.running import colab\n\nassert colab.one_line_errors()"),
            nbformat.v4.new_code_cell("1 / 0"),
        ]
    )
    nbformat.write(source, tmp_path / "t.ipynb")
    import papermill

    with notebook_runner.current_interpreter_kernel() as kernel, pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(tmp_path / "t.ipynb"), str(tmp_path / "o.ipynb"), kernel_name=kernel,
                                   progress_bar=False)  # fmt: skip
    assert err.value.ename == "ZeroDivisionError" and len(err.value.traceback) > 1
    assert colab.one_line_errors(shell=None) is False  # outside IPython: nothing to register


def write_run(folder, cfg, status):
    run = RunDir(folder).create()
    run.config.write_text(json.dumps(notebook_runner.with_absolute_paths(cfg).to_dict()))
    run.manifest.write_text(json.dumps({"status": status}))
    return run


def test_run_or_resume_starts_continues_or_shows(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(notebook_runner, "run", lambda cfg, output: calls.append(("run", output)) or RunDir(output))
    monkeypatch.setattr(notebook_runner, "resume", lambda output: calls.append(("resume", output)) or RunDir(output))
    cfg = config.make_config("smoke")
    colab.run_or_resume(cfg, tmp_path / "new")
    write_run(tmp_path / "cut", cfg, "running")
    colab.run_or_resume(cfg, tmp_path / "cut")
    assert "was interrupted: continuing it" in capsys.readouterr().out
    write_run(tmp_path / "done", cfg, "completed")
    assert colab.run_or_resume(cfg, tmp_path / "done").root == tmp_path / "done"
    assert "already completed: showing it" in capsys.readouterr().out
    assert calls == [("run", tmp_path / "new"), ("resume", tmp_path / "cut")]
    assert colab.default_run_name(cfg) == "smoke-seed0"
    with pytest.raises(RunError, match=r"holds a run with a different epochs, seed: set run_name to a new name"):
        colab.run_or_resume(config.make_config("smoke", seed=1, epochs=2), tmp_path / "done")
    assert len(calls) == 2


def test_show_report_in_colab_serves_the_report_from_the_runtime(fake_colab, tmp_path, capsys):
    run = write_run(tmp_path / "r", config.make_config("smoke"), "completed")
    run.report.write_text("<html>the report</html>")
    colab.show_report(run)
    assert f"report: {run.report}" in capsys.readouterr().out
    (kind, port, path), (kind2, port2, path2) = fake_colab.served
    assert (kind, kind2, path, path2, port2) == ("window", "iframe", "/report.html", "/report.html", port)
    with urllib.request.urlopen(f"http://localhost:{port}/report.html", timeout=10) as response:
        assert response.read() == b"<html>the report</html>"


def literal_assignments(source: str) -> dict:
    """The parameters cell's names and values; fails unless every statement assigns a literal."""
    values = {}
    for statement in ast.parse(source).body:
        assert isinstance(statement, ast.Assign), ast.dump(statement)
        values[statement.targets[0].id] = ast.literal_eval(statement.value)
    return values


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_the_same_colab_set_up_and_literal_parameters(path):
    nb = nbformat.read(path, as_version=4)
    tagged = {tag: c for c in nb.cells for tag in c.metadata.get("tags", [])}
    badge = (
        f"https://colab.research.google.com/github/cifar100-study/cifar100-10-epochs/blob/main/notebooks/{path.name}"
    )
    assert badge in nb.cells[0].source
    params = literal_assignments(tagged["parameters"].source)
    set_ups = [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]
    (set_up,) = set_ups
    assert "report-skip" in set_up.metadata["tags"] and nb.cells.index(set_up) > nb.cells.index(tagged["parameters"])
    assert f"git clone -q --depth 1 {REPO_URL} {{repo}}" in set_up.source
    assert "%run {repo}/cifar100_helpers/running/colab_setup.py" in set_up.source
    assert len(set_up.source.splitlines()) <= 5  # the shared set-up is short; colab_setup.py holds the rest
    reference = nbformat.read(notebook_runner.NOTEBOOK_DIR / "00_colab.ipynb", as_version=4)
    assert set_up.source == next(c.source for c in reference.cells if "google.colab" in c.source)
    if path.name in notebook_runner.NOTEBOOKS:
        assert params["run_dir"] is None
    if path.name == "00_colab.ipynb":
        assert params == {"recipe": "auto", "data_path": None, "epochs": None, "seed": 0, "overrides": {},
                          "run_name": None}  # fmt: skip


def run_all(folder, **parameters):
    """Execute 00_colab.ipynb with papermill in ``folder`` (its outputs/ is where runs go outside Colab)."""
    import papermill

    output = folder / f"00_colab-{len(list(folder.glob('00_colab-*')))}.ipynb"
    with notebook_runner.current_interpreter_kernel() as kernel:
        papermill.execute_notebook(str(notebook_runner.NOTEBOOK_DIR / "00_colab.ipynb"), str(output),
                                   parameters=parameters, kernel_name=kernel, cwd=str(folder),
                                   progress_bar=False)  # fmt: skip
    return "".join(o.get("text", "") + json.dumps(o.get("data", {})) for c in nbformat.read(output, 4).cells
                   for o in c.get("outputs", []))  # fmt: skip


@pytest.mark.slow  # a smoke pipeline run plus three kernels: about 100 s on the 2-core machine
def test_run_all_notebook_runs_resumes_and_shows_a_completed_run(tmp_path):
    shown = run_all(tmp_path, recipe="smoke", run_name="smoke")
    run = RunDir(tmp_path / "outputs" / "smoke")
    record = json.loads(run.manifest.read_text())
    assert record["status"] == "completed" and record["completed_notebooks"] == list(notebook_runner.NOTEBOOKS)
    assert run.report.exists() and run.metrics.exists() and (tmp_path / "outputs" / "index.html").exists()
    assert "Test top-1" in shown and f"report: {run.report}" in shown

    # as if the runtime died after 04 finished, before the run was marked completed: the next call resumes it
    record.update(status="running")
    run.manifest.write_text(json.dumps(record))
    run.report.unlink()
    shown = run_all(tmp_path, recipe="smoke", run_name="smoke")
    record = json.loads(run.manifest.read_text())
    assert "was interrupted: continuing it" in shown and "Test top-1" in shown
    assert record["status"] == "completed" and run.report.exists()
    assert len(record["attempts"]) == 2 and record["attempts"][1]["skipped"] == list(notebook_runner.NOTEBOOKS)

    before = run.manifest.read_text()
    shown = run_all(tmp_path, recipe="smoke", run_name="smoke")
    assert "already completed: showing it" in shown and "Test top-1" in shown
    assert run.manifest.read_text() == before  # nothing ran again


NO_DEPS = "install -q --no-deps -e REPO"
EXTRAS = "install -q EXTRAS"


@pytest.mark.parametrize(
    "tpu, builds, loaded, commands, restart",
    [
        (False, {"tensorflow": "2.20.0"}, False, ["install -q -e REPO"], False),
        (True, {"tensorflow-tpu": "2.20.0"}, True, [EXTRAS, NO_DEPS], False),
        (True, {}, False, ["install -q TPU", NO_DEPS], False),  # a TPU image without TensorFlow
        (True, {"tensorflow": "2.20.0"}, False, ["uninstall -q -y tensorflow", "install -q TPU", NO_DEPS], False),
        (True, {"tensorflow": "2.20.0"}, True, ["uninstall -q -y tensorflow", "install -q TPU", NO_DEPS], True),
        (True, {"tensorflow-cpu": "2.19.0"}, False, ["uninstall -q -y tensorflow-cpu", "install -q TPU", NO_DEPS],
         False),
        (True, {"tensorflow-tpu": "2.18.0"}, True, ["uninstall -q -y tensorflow-tpu", "install -q TPU", NO_DEPS],
         True),  # an old TPU build is replaced
        (True, {"tensorflow-tpu": "2.20.0", "tensorflow": "2.19.0"}, False,
         ["uninstall -q -y tensorflow tensorflow-tpu", "install -q TPU", NO_DEPS], False),  # two builds, one folder
        (True, {"tensorflow-tpu": "3.0.0"}, False, ["uninstall -q -y tensorflow-tpu", "install -q TPU", NO_DEPS],
         False),  # outside the pinned range
    ],
    ids=["gpu-or-cpu", "tpu-build-present", "tpu-no-tensorflow", "tpu-image-ships-cpu-tensorflow", "cpu-build-loaded",
         "tpu-image-ships-tensorflow-cpu", "old-tpu-build", "tpu-and-cpu-builds", "too-new-tpu-build"],
)  # fmt: skip
def test_colab_set_up_installs_the_tpu_build_wherever_it_is_missing(tpu, builds, loaded, commands, restart):
    from cifar100_helpers.running import colab_setup

    planned, line = colab_setup.plan(tpu, builds, loaded)
    tpu_build = f'"{colab_setup.TPU_TENSORFLOW}" {colab_setup.TPU_EXTRAS} -f {colab_setup.TPU_WHEELS}'
    shown = [c.replace(str(colab_setup.REPO), "REPO").replace(tpu_build, "TPU")
             .replace(f"install -q {colab_setup.TPU_EXTRAS}", EXTRAS) for c in planned]  # fmt: skip
    assert shown == commands and bool(line) == restart
    assert not restart or "Restart session" in line


def test_colab_set_up_pins_keras_to_the_project_range_where_it_installs_without_dependencies():
    import tomllib

    from cifar100_helpers.running import colab_setup

    project = tomllib.loads((notebook_runner.REPO / "pyproject.toml").read_text())["project"]
    assert colab_setup.KERAS in project["dependencies"]
    assert all(f'"{colab_setup.KERAS}"' in c for c in colab_setup.plan(True, {}, False)[0] if "--no-deps" not in c
               and "uninstall" not in c)  # fmt: skip


def test_a_needed_restart_stops_run_all_with_one_line(monkeypatch):
    """The set-up cell raises (so Colab's "Run all" stops there) instead of printing and running on."""
    from IPython.core.interactiveshell import InteractiveShell

    from cifar100_helpers.running import colab_setup

    shell = InteractiveShell.instance()
    monkeypatch.setattr(shell, "run_line_magic", lambda magic, line: None)  # the installs
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    monkeypatch.setattr("cifar100_helpers.machine.tpu_address", lambda: "local")
    monkeypatch.setattr(colab_setup, "distribution", lambda name: "2.20.0" if name == "tensorflow" else None)
    monkeypatch.setitem(sys.modules, "tensorflow", sys.modules.get("tensorflow") or types.ModuleType("tensorflow"))
    with pytest.raises(colab_setup.RestartNeeded, match="restart the session"):
        colab_setup.main()  # TensorFlow is loaded in this process: the CPU build would stay in memory


def test_colab_set_up_asks_for_a_tpu_build_that_exists():
    from cifar100_helpers.running import colab_setup

    assert colab_setup.TPU_TENSORFLOW == "tensorflow-tpu>=2.19,<2.21"  # PyPI's newest tensorflow-tpu is 2.20.0
