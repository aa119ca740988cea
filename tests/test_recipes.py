"""Every recipe builds at a small input size and takes real training steps on generated data (CPU)."""

import json

import keras
import numpy as np
import pytest

from cifar100_helpers import config, data, models, training
from cifar100_helpers.errors import ConfigError
from cifar100_helpers.running import epoch_files
from cifar100_helpers.running.run_dir import RunDir

SMALL = {
    "cpu": {"widths": (8, 16, 16)},
    "scratch": {"widths": (8, 16, 16), "start_size": 24},
    "seed": {"weights": None, "head_filters": 8, "head_units": 8, "backbone": "EfficientNetV2B0"},  # V2L: below
    "transfer": {"weights": None, "backbone": "EfficientNetV2B0", "image_size": 32},
}


@pytest.fixture(scope="module")
def small_data(archive):
    return data.load(archive, verify=False)


# seed (EfficientNetV2L) and transfer take minutes on a CPU: their real training steps are taken in
# the slow pipeline tests below (make test-slow), cpu and scratch here and there.
HEAVY = {"seed", "transfer"}


@pytest.mark.parametrize("recipe", sorted(set(SMALL) - HEAVY))
def test_recipe_takes_real_training_steps(recipe, small_data, tmp_path):
    cfg = config.make_config(recipe, epochs=2, batch_size=32, **SMALL[recipe])
    model = models.build(cfg, small_data.train.x)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights[-1:]]
    limited = data.Cifar100(small_data.train.take(np.arange(96)), small_data.val.take(np.arange(32)),
                            small_data.test, small_data.fine_names, small_data.coarse_names, "generated")  # fmt: skip
    history = epoch_files.train(model, limited, cfg, RunDir(tmp_path).create(), interactive=False)
    assert len(history) == 2 and np.isfinite(history[-1]["loss"])
    assert not np.array_equal(before[0], keras.ops.convert_to_numpy(model.trainable_weights[-1]))
    keras.backend.clear_session()


def test_transfer_resizes_inside_the_model():
    cfg = config.make_config("transfer", weights=None, backbone="EfficientNetV2B0", image_size=64)
    model = models.build(cfg)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.get_layer("resize").output.shape[1:3] == (64, 64)
    keras.backend.clear_session()


def test_transfer_loads_a_local_weights_file(tmp_path):
    """The offline path: a weights file saved first loads into the backbone."""
    cfg = config.make_config("transfer", weights=None, backbone="EfficientNetV2B0", image_size=32)
    reference = models.backbone(cfg)
    path = tmp_path / "efficientnetv2-b0_notop.weights.h5"
    reference.save_weights(path)
    loaded = models.backbone(config.make_config("transfer", weights=str(path), backbone="EfficientNetV2B0",
                                                image_size=32))  # fmt: skip
    assert all(np.array_equal(a, b) for a, b in zip(reference.get_weights(), loaded.get_weights(), strict=True))
    keras.backend.clear_session()


def test_transfer_offline_names_the_file(offline):
    cfg = config.make_config("transfer", backbone="ConvNeXtTiny", image_size=32)
    with pytest.raises(ConfigError, match=r"convnext_tiny_notop\.h5.*convnext/.*--weights PATH"):
        models.backbone(cfg)
    keras.backend.clear_session()


@pytest.mark.parametrize("recipe", ["transfer", "seed"])
def test_unknown_backbone_lists_valid_ones(recipe):
    with pytest.raises(ConfigError, match="EfficientNetV2S.*ConvNeXtBase"):
        config.make_config(recipe, backbone="ResNet50")


def test_resolution_too_small_for_backbone():
    with pytest.raises(ConfigError, match="at least 32"):
        config.make_config("transfer", image_size=16)


@pytest.mark.parametrize(
    ("epoch", "size"), [(0, 24), (3, 24), (4, 28), (6, 28), (7, 32), (9, 32)]
)  # fmt: skip
def test_progressive_image_size(epoch, size):
    assert training.image_size_for_epoch(epoch, epochs=10, start=24, end=32) == size


def test_progressive_size_off():
    assert training.image_size_for_epoch(0, epochs=10, start=0, end=32) == 32


@pytest.mark.slow  # a pipeline run each (make test-slow); make test runs smoke's (nbval, test_pipeline)
@pytest.mark.parametrize("recipe", sorted(SMALL))
def test_recipe_runs_through_the_pipeline_in_smoke_size(recipe, tmp_path):
    from cifar100_helpers.running import notebook_runner

    cfg = config.make_config(recipe, epochs=1, batch_size=32, generated=True, verify=False, **SMALL[recipe])
    run = notebook_runner.run(cfg, tmp_path / recipe)
    assert run.report.exists() and run.metrics.exists()
    assert json.loads(run.manifest.read_text())["training"]["replicas"] == 1
