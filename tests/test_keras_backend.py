"""Keras on another backend (``KERAS_BACKEND=jax``, or ``"backend": "jax"`` in ~/.keras/keras.json) cannot run the
TensorFlow ops of the data pipeline and the models: the package's processes run Keras on TensorFlow whatever the
user set, and a Keras already loaded on another backend is refused in one line."""

import json
import os
import subprocess
import sys
import types

import pytest

import cifar100_helpers
from cifar100_helpers.errors import ConfigError


@pytest.mark.slow  # about 30 s: TensorFlow starts in a fresh process
def test_a_jax_backend_in_env_and_keras_json_still_trains_on_tensorflow(archive, tmp_path):
    """A CLI path that builds and trains a model (one bench step), with both of the user's settings saying jax."""
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True)
    (home / ".keras" / "keras.json").write_text(json.dumps({"backend": "jax", "floatx": "float32"}))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_HOME"} | {"HOME": str(home), "KERAS_BACKEND": "jax"}
    output = tmp_path / "bench.json"
    argv = ["bench", "--recipes", "cpu", "--data", str(archive), "--no-verify", "--steps", "1", "--output", str(output),
            "--set", "mixed_precision=False", "--set", "widths=[8,8,16]", "--set", "batch_size=32"]  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "cifar100_helpers", *argv], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(output.read_text())["recipes"][0]["train_images_per_second"] > 0


def test_importing_the_package_sets_the_tensorflow_backend(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    cifar100_helpers.use_tensorflow_backend()
    assert os.environ["KERAS_BACKEND"] == "tensorflow"


def keras_on(backend: str) -> types.SimpleNamespace:
    """A stand-in for a ``keras`` module already imported on ``backend``."""
    return types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: backend))


def test_keras_already_loaded_on_another_backend_is_refused_in_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", keras_on("jax"))
    with pytest.raises(ConfigError) as refused:
        cifar100_helpers.use_tensorflow_backend()
    message = str(refused.value)
    assert message.startswith("Keras runs on the jax backend; this project needs tensorflow: set KERAS_BACKEND=")
    assert "\n" not in message


def test_keras_already_loaded_on_tensorflow_is_accepted(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras", keras_on("tensorflow"))
    cifar100_helpers.use_tensorflow_backend()
