"""The papermill pipeline and the command line, end to end on generated data."""

import json

import nbformat
import pytest

from cifar100_helpers import config
from cifar100_helpers.commands import cli
from cifar100_helpers.errors import RunError
from cifar100_helpers.running import notebook_runner
from cifar100_helpers.running.history import read_history


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return notebook_runner.run(config.make_config("smoke"), tmp_path_factory.mktemp("runs") / "smoke")


def test_smoke_run_produces_every_artifact(smoke_run):
    for name in notebook_runner.NOTEBOOKS:
        nb = nbformat.read(smoke_run.notebook(name), as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    metrics = json.loads(smoke_run.metrics.read_text())
    assert {"top1", "top5", "top1_tta", "top5_tta"} <= set(metrics) and metrics["generated_data"]
    assert smoke_run.history.read_text().startswith("epoch,loss,accuracy,top5")
    manifest = json.loads(smoke_run.manifest.read_text())
    assert manifest["status"] == "completed" and manifest["config"]["recipe"] == "smoke"
    assert {"tensorflow", "keras", "python"} <= set(manifest["versions"])
    assert "commit" in manifest["git"] and "cpu" in manifest["hardware"]
    for figure in (
        "samples", "augmentation", "curves", "superclass_confusion", "best_worst_classes", "class_accuracy",
        "best_class_examples", "worst_class_examples", "confused_pairs", "calibration",
        "gradcam", "epoch_speed", "confident_mistakes",
    ):  # fmt: skip
        assert smoke_run.figure(figure).exists(), figure
    assert metrics["top1_ci95"][0] <= metrics["top1"] <= metrics["top1_ci95"][1]
    assert {"temperature", "ece", "ece_scaled"} <= set(metrics["calibration"])
    assert len(metrics["class_accuracy"]) == 100 and len(metrics["superclass_accuracy"]) == 20
    assert (smoke_run.root.parent / "index.html").exists()


def test_report_is_self_contained_and_flags_generated_data(smoke_run):
    html = smoke_run.report.read_text()
    assert "GENERATED DATA" in html[: html.index("Test top-1")]
    assert 'src="http' not in html
    figures = list(smoke_run.figures.glob("*.png"))
    assert html.count("data:image/png;base64") >= len(figures) >= 14  # every figure embedded, not its repr
    assert "Figure size" not in html  # the text a figure displays as when it is not rendered
    assert "cfg = config.from_parameters" not in html  # code hidden
    for section in ("Calibration", "Grad-CAM", "Most-confused pairs", "Every class", "The training story"):
        assert section in html


def test_existing_run_directory_is_never_overwritten(smoke_run):
    before = smoke_run.metrics.read_text()
    with pytest.raises(RunError, match="never overwritten.*or continue it with --resume"):
        notebook_runner.run(config.make_config("smoke"), smoke_run.root)
    assert smoke_run.metrics.read_text() == before


def test_failing_notebook_names_notebook_and_cell_and_keeps_it(tmp_path):
    cfg = config.make_config("smoke", batch_size=100_000)  # valid, but larger than the training split
    with pytest.raises(RunError, match=r"03_train.ipynb failed in cell \d+ \(ConfigError: global batch size") as err:
        notebook_runner.run(cfg, tmp_path / "fails")
    assert "partly executed notebook is kept" in str(err.value)
    assert (tmp_path / "fails" / "03_train.ipynb").exists()
    assert json.loads((tmp_path / "fails" / "run.json").read_text())["status"] == "failed"
    assert "RUN FAILED" in (tmp_path / "fails" / "report.html").read_text()


def test_notebook_parameters_carry_every_change(tmp_path):
    cfg = config.make_config("cpu", epochs=2, batch_size=16, data="x.tar.gz")
    params = notebook_runner.notebook_parameters(cfg, notebook_runner.RunDir(tmp_path))
    assert params["epochs"] == 2 and params["data_path"] == "x.tar.gz" and params["interactive"] is False
    rebuilt = config.from_parameters(params["recipe"], params["data_path"], params["verify"], params["epochs"],
                                     params["seed"], params["overrides"])  # fmt: skip
    assert rebuilt == cfg


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch, isolated_env):
    monkeypatch.chdir(tmp_path)
    cfg = notebook_runner.with_absolute_paths(config.make_config("transfer", data="data/c100.tar.gz", weights="w.h5"))
    assert cfg.data == str(tmp_path / "data" / "c100.tar.gz") and cfg.weights == str(tmp_path / "w.h5")
    untouched = notebook_runner.with_absolute_paths(config.make_config("transfer"))
    assert untouched.data is None and untouched.weights == "imagenet"


def test_cli_bad_input_is_one_line_and_nonzero(capsys, tmp_path):
    assert cli.main(["run", "--recipe", "resnet", "--output", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Valid recipes" in err
    assert cli.main(["run", "--recipe", "cpu", "--epochs", "11", "--output", str(tmp_path / "x")]) == 2
    assert "--allow-over-budget" in capsys.readouterr().err
    assert cli.main(["run", "--set", "nonsense", "--output", str(tmp_path / "x")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_without_data_stops_before_creating_the_run(capsys, tmp_path, offline):
    assert cli.main(["run", "--recipe", "cpu", "--output", str(tmp_path / "real")]) == 2
    assert "make demo" in capsys.readouterr().err
    assert not (tmp_path / "real").exists()


def test_nan_loss_stops_training_and_marks_the_run_failed(tmp_path):
    cfg = config.make_config("smoke", learning_rate=1e30, label_smoothing=0.0, epochs=2)
    with pytest.raises(
        RunError, match=r"03_train.ipynb failed .*NaN or infinite at epoch 1, batch(es)? [0-9-]+"
    ) as err:
        notebook_runner.run(cfg, tmp_path / "nan")
    assert "--set learning_rate" in str(err.value)
    assert not (tmp_path / "nan" / "model.keras").exists()
    assert "RUN FAILED" in (tmp_path / "nan" / "report.html").read_text()


def test_output_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(RunError, match="writable folder"):
        notebook_runner.run(config.make_config("smoke"), blocker / "run")


@pytest.mark.slow  # a second smoke pipeline run: about 60 s on the 2-core machine
def test_a_run_that_holds_out_nothing_completes(tmp_path):
    """cpu trains on every training image (val_fraction 0): each notebook copes without a validation split."""
    run = notebook_runner.run(config.make_config("smoke", val_fraction=0.0), tmp_path / "run")
    assert json.loads(run.manifest.read_text())["status"] == "completed"
    assert [row["val_accuracy"] for row in read_history(run.history)] == [None]
    results = nbformat.read(run.notebook("04_results.ipynb"), as_version=4)
    assert "no temperature is fitted" in json.dumps(results.cells)
    calibration = json.loads(run.metrics.read_text())["calibration"]
    assert set(calibration) == {"ece", "nll"} and run.figure("calibration").exists()
