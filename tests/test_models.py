import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar100_helpers import batchnorm, config, models
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


def test_seed_model_without_pretrained_weights():
    """The student team's EfficientNetV2L (117.7M parameters without its top, Keras's table) and head; the
    smoke-size pipeline test puts the head on EfficientNetV2B0 (V2L took 10 minutes there)."""
    cfg = config.make_config("seed", weights=None)
    model = models.build(cfg)
    assert model.name == "seed_efficientnetv2l" and model.layers[1].count_params() == 117_746_848
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


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_fused_batch_norm_trains_as_keras_batch_norm(policy, tmp_path):
    keras.mixed_precision.set_global_policy(policy)
    try:
        rng = np.random.default_rng(0)
        x = (rng.normal(size=(8, 5, 5, 6)) * 3 + 2).astype(np.float32)
        fused = batchnorm.FusedBatchNorm(momentum=0.6, epsilon=1e-5)
        plain = keras.layers.BatchNormalization(momentum=0.6, epsilon=1e-5)
        weights = [rng.normal(size=6).astype(np.float32) for _ in range(2)] + [np.zeros(6), np.ones(6)]
        for layer in (fused, plain):
            layer.build(x.shape)
            layer.set_weights(weights)
        outputs, grads, stats = [], [], []
        for layer in (fused, plain):
            xt = keras.ops.convert_to_tensor(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = layer(xt, training=True)
                loss = keras.ops.sum(keras.ops.cast(y, "float32") ** 3)
            outputs.append(keras.ops.convert_to_numpy(keras.ops.cast(y, "float32")))
            grads.append([g.numpy() for g in tape.gradient(loss, [xt, layer.gamma.value, layer.beta.value])])
            stats.append([keras.ops.convert_to_numpy(w) for w in (layer.moving_mean, layer.moving_variance)])
        tolerance = 1e-4 if policy == "float32" else 2e-2
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=tolerance, atol=tolerance)
        for a, b in zip(*grads, strict=True):
            np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance * np.abs(b).max())
        n = x.size / 6  # the fused kernel's moving variance uses the unbiased batch variance
        np.testing.assert_allclose(stats[0][0], stats[1][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(0.4 * (stats[0][1] - 0.6), 0.4 * (stats[1][1] - 0.6) * n / (n - 1), rtol=1e-4)
        assert y.dtype == keras.mixed_precision.dtype_policy().compute_dtype
        np.testing.assert_allclose(  # inference is Keras's own, with the moving statistics
            keras.ops.convert_to_numpy(fused(x, training=False)).astype(np.float32),
            keras.ops.convert_to_numpy(
                keras.ops.cast(
                    (x - stats[0][0]) / np.sqrt(stats[0][1] + 1e-5) * fused.gamma + fused.beta, fused.compute_dtype
                )
            ).astype(np.float32),
            rtol=tolerance,
            atol=tolerance,
        )
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_airbench_model_with_fused_batch_norm_saves_and_reloads(tmp_path):
    model = models.build(config.make_config("smoke"))
    assert any(isinstance(layer, batchnorm.FusedBatchNorm) for layer in model.layers)
    images = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert [type(layer) for layer in reloaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), rtol=1e-5)


def test_fused_batch_norm_leaves_synchronized_statistics_to_keras(monkeypatch):
    layer = batchnorm.FusedBatchNorm(synchronized=True)
    layer.build((2, 3, 3, 4))
    monkeypatch.setattr(tf.compat.v1.nn, "fused_batch_norm", None)  # calling it would fail
    assert layer(np.ones((2, 3, 3, 4), np.float32), training=True).shape == (2, 3, 3, 4)
