import keras
import numpy as np
import pytest

from cifar100_helpers import config, models
from cifar100_helpers.errors import ConfigError


def test_whitening_filters_decorrelate_patches():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(64, 8, 8, 1))
    images = np.clip(base + rng.integers(-20, 20, size=(64, 8, 8, 3)), 0, 255).astype(np.uint8)  # correlated
    assert models.whitening_filters(images)[0].shape == (2, 2, 3, 24)
    kernel, bias = models.whitening_filters(images, eps=1e-9)  # eps only damps tiny eigenvalues
    x = images.astype(np.float32) / 255
    patches = np.stack([x[:, i : i + 7, j : j + 7] for i in range(2) for j in range(2)], axis=3).reshape(-1, 12)
    out = patches @ kernel.reshape(12, 24)[:, :12] + bias[:12]
    assert np.allclose(out.mean(axis=0), 0, atol=1e-3)
    assert np.allclose(np.cov(out, rowvar=False), np.eye(12), atol=1e-3)
    assert np.allclose(kernel[..., 12:], -kernel[..., :12])


@pytest.mark.parametrize("recipe", ["cpu", "smoke"])
def test_airbench_output_shape(recipe):
    cfg = config.make_config(recipe)
    images = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    model = models.build(cfg, images)
    assert model.get_layer("whiten").trainable is False
    assert models.forward_check(model, images[:4]).shape == (4, 100)


def test_dirac_convolutions_start_as_the_identity():
    cfg = config.make_config("smoke", dirac=True)  # widths 8/16/16 after 24 whitened channels: every kind
    model = models.build(cfg)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D) and layer.trainable]
    assert len(convs) == 6
    rng = np.random.default_rng(0)
    for conv in convs:
        kernel = keras.ops.convert_to_numpy(conv.kernel)
        n = min(kernel.shape[2:])
        features = rng.normal(size=(1, 5, 5, kernel.shape[2])).astype("float32")
        passed = keras.ops.convert_to_numpy(keras.ops.conv(features, kernel[..., :n], padding="same"))
        np.testing.assert_allclose(passed, features[..., :n], atol=1e-6)  # filter j passes input channel j
        if kernel.shape[3] > n:
            assert np.abs(kernel[..., n:]).mean() > 0.01  # the new filters keep their random start
    plain = [layer for layer in models.build(config.make_config("smoke")).layers if layer.name.startswith("conv2d")]
    assert all(keras.ops.convert_to_numpy(conv.kernel)[1, 1, 0, 0] != 1.0 for conv in plain)  # off by default


def test_seed_model_without_pretrained_weights():
    cfg = config.make_config("seed", weights=None)
    model = models.build(cfg)
    names = [layer.__class__.__name__ for layer in model.get_layer("head").layers]
    assert names == [
        "Conv2D", "BatchNormalization", "Dropout", "GlobalAveragePooling2D", "Flatten", "Dense", "Dense",
    ]  # fmt: skip
    assert model.get_layer("head").layers[0].activation.__name__ == "elu"
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    assert models.forward_check(model, images).shape == (2, 100)
    keras.backend.clear_session()


def test_seed_without_network_names_the_weights_file(offline):
    with pytest.raises(ConfigError, match="efficientnetv2-l_notop.h5.*~/.keras/models/.*weights=None"):
        models.build(config.make_config("seed"))
    keras.backend.clear_session()
