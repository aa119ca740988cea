import dataclasses
import json

import pytest

from cifar100_helpers import config, data
from cifar100_helpers.commands import cli, tune

from .test_hostile import one_line_error


def test_tune_scores_every_tta_on_the_validation_split(tmp_path, capsys):
    assert cli.main(["tune", "--recipe", "smoke", "--set", "widths=[8,8,16]", "--output", str(tmp_path / "t")]) == 0
    result = json.loads((tmp_path / "t" / "validation.json").read_text())
    assert set(result["val_top1"]) == set(config.TTA_MODES)
    assert all(0 <= v <= 1 for v in result["val_top1"].values())
    assert result["changes"] == {"widths": [8, 8, 16]} and result["epochs"] == 1
    assert result["training_minutes"] > 0 and result["hardware"]["cpu_cores"] and "commit" in result
    assert result["precision"] in ("float32", "mixed_bfloat16")  # bfloat16 where the CPU computes it natively
    assert "min of training" in capsys.readouterr().out


def test_tune_float32_flag_turns_bfloat16_off(tmp_path):
    argv = ["tune", "--recipe", "smoke", "--float32", "--set", "widths=[8,8,16]", "--output", str(tmp_path / "t")]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "t" / "validation.json").read_text())["precision"] == "float32"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "val_fraction=0"], "val_fraction must be above 0"),
        (["--set", "widths=abc"], "widths must be a list of whole numbers"),
        (["--set", "learnin_rate=0.1"], "did you mean 'learning_rate'"),
        (["--recipe", "cpu", "--data", "/nonexistent/cifar.tar.gz"], "/nonexistent/cifar.tar.gz"),
    ],
)
def test_tune_bad_input_is_one_line(tmp_path, capsys, argv, message):
    argv = ["tune", "--recipe", "smoke", *argv, "--output", tmp_path / "t"]
    assert message in one_line_error(capsys, *argv)


def test_validate_never_reads_the_test_split(archive, tmp_path, monkeypatch):
    """The loaded data has no test split at all: any use of it would fail."""
    real_load = data.load

    def load_without_test(*args, **kwargs):
        return dataclasses.replace(real_load(*args, **kwargs), test=None)

    monkeypatch.setattr(data, "load", load_without_test)
    cfg = config.make_config("smoke", generated=False, data=str(archive), widths=(8, 8, 8))
    result = tune.validate(cfg, tmp_path / "t", {})
    assert set(result["val_top1"]) == set(config.TTA_MODES)


def test_tune_into_a_folder_of_other_settings_is_refused(tmp_path, capsys):
    out = tmp_path / "t"
    assert cli.main(["tune", "--recipe", "smoke", "--set", "widths=[8,8,16]", "--output", str(out)]) == 0
    before = (out / "history.csv").read_text()
    err = one_line_error(capsys, "tune", "--recipe", "smoke", "--set", "widths=[8,8,8]", "--output", out)
    assert "holds a training with other settings" in err
    assert (out / "history.csv").read_text() == before  # nothing retrained or lost


def test_a_recipe_that_holds_out_nothing_is_tuned_on_a_holdout(archive, tmp_path):
    """cpu trains on all 50,000 training images; tune still judges it on images it did not train on."""
    cfg = config.make_config("smoke", generated=False, data=str(archive), widths=(8, 8, 8), val_fraction=0.0)
    result = tune.validate(cfg, tmp_path / "t", {})
    assert result["validation_images"] == round(tune.HOLDOUT * 2000)  # the generated archive: 2,000 training images
    assert json.loads((tmp_path / "t" / "config.json").read_text())["val_fraction"] == tune.HOLDOUT
