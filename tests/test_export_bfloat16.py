"""export of a run trained in mixed bfloat16, the default on a CPU with AVX512_BF16/AMX (issue 28): every format is
written in float32 and checked against the float32 build of the same weights, and an artifact that fails its check
is not left at the output path to block the retry. The run is faked as in test_predict_export (model.keras and
config.json, nothing trained), its model built under the policy distribute.precision_for picks on such a CPU."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from cifar100_helpers import config, distribute, models
from cifar100_helpers.commands import export
from cifar100_helpers.running.run_dir import RunDir

from .test_predict_export import EXTRA, RUNTIMES, reload, run_cli


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory, first20) -> Path:
    """A finished smoke run as a bfloat16 CPU leaves it: its model saved under mixed_bfloat16 (float32 weights),
    the output layer's weights large so that the probabilities are peaked and bfloat16's rounding shows."""
    import keras

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distribute, "cpu_bfloat16", lambda: True)
        policy = distribute.precision_for("cpu")
    assert policy == "mixed_bfloat16"
    cfg = config.make_config("smoke")
    keras.utils.set_random_seed(2)  # an initialisation whose bfloat16 rounding shows on export's own check images
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = models.build(cfg, whitening_images=first20[0])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    kernel, bias = model.layers[-1].get_weights()
    model.layers[-1].set_weights([np.random.default_rng(0).normal(0, 10, kernel.shape).astype(np.float32), bias])
    run = RunDir(tmp_path_factory.mktemp("run") / "bf16-run")
    run.create()
    run.config.write_text(json.dumps(cfg.to_dict()))
    model.save(run.model)
    return run.root


def output(tmp_path: Path, run_dir: Path, fmt: str) -> Path:
    return tmp_path / RunDir(run_dir).export(fmt).name


@pytest.mark.parametrize("fmt", list(export.FORMATS))
def test_bfloat16_run_exports_in_float32_and_passes_its_check(fmt, bf16_run, tmp_path, first20, capsys):
    absent = [m for m in RUNTIMES[fmt] if importlib.util.find_spec(m) is None]
    if absent:
        pytest.skip(f"{fmt} export {EXTRA} ({', '.join(absent)} missing)")
    trained = models.load(RunDir(bf16_run).model, compile=False)
    assert models.precision_of(trained) == "mixed_bfloat16"
    assert export.precision_difference(trained, export.float32_model(trained)) > export.TOLERANCE  # on its images
    float32 = models.load(RunDir(bf16_run).model, compile=False, precision="float32")  # same weights, float32
    capsys.readouterr()
    path = output(tmp_path, bf16_run, fmt)
    code, out, err = run_cli(capsys, "export", bf16_run, "--format", fmt, "--output", path)
    assert code == 0, err
    assert f"Saved {path}" in out and "difference from the Keras model in float32" in out
    assert "The model trained in mixed_bfloat16 and the export computes in float32" in out
    x = first20[0].astype(np.float32)
    expected, as_trained = float32.predict(x, verbose=0), trained.predict(x, verbose=0)
    got = reload(fmt, path)(x)
    assert got.shape == (20, 100) and np.allclose(got.sum(axis=1), 1, atol=1e-4)
    assert np.max(np.abs(got - expected)) <= export.TOLERANCE
    assert np.max(np.abs(as_trained - expected)) > export.TOLERANCE  # the bfloat16 model is not the reference


def test_summary_of_a_float32_run_has_no_precision_line(tmp_path):
    summary = export.Exported(tmp_path / "m.onnx", "onnxruntime", 2e-7).summary()
    assert summary.count("\n") == 1 and "trained in" not in summary


def test_an_artifact_failing_its_check_is_deleted_and_the_retry_works(bf16_run, tmp_path, capsys, monkeypatch):
    path = output(tmp_path, bf16_run, "savedmodel")
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # every artifact fails
    code, out, err = run_cli(capsys, "export", bf16_run, "--format", "savedmodel", "--output", path)
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1, err
    assert "differs from the float32 Keras model" in err and f"deleted, not saved as {path}" in err
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor its staging folder
    monkeypatch.undo()
    code, out, err = run_cli(capsys, "export", bf16_run, "--format", "savedmodel", "--output", path)
    assert code == 0 and f"Saved {path}" in out, err
    assert path.is_dir()
