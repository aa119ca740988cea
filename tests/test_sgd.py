import keras
import numpy as np
import pytest

from cifar100_helpers import config, training
from cifar100_helpers.sgd import BiasScaledSGD


def steps(optimizer, names):
    """Each variable's change after two identical steps from ones with gradient ones."""
    variables = [keras.Variable(np.ones(4, "float32"), name=name) for name in names]
    optimizer.build(variables)
    for _ in range(2):
        optimizer.apply([np.ones(4, "float32")] * len(variables), variables)
    return [1.0 - float(np.asarray(v)[0]) for v in variables]


def test_batchnorm_biases_step_bias_lr_scale_times_as_far():
    beta, gamma, kernel = steps(BiasScaledSGD(0.01, bias_lr_scale=16.0, momentum=0.9), ["beta", "gamma", "kernel"])
    plain = steps(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), ["beta"])[0]
    assert gamma == pytest.approx(plain) and kernel == pytest.approx(plain)  # the rest is plain Nesterov SGD
    assert beta == pytest.approx(16 * plain)


def test_the_recipe_optimizer_follows_bias_lr_scale():
    assert type(training.make_optimizer(config.make_config("cpu"), 10)) is keras.optimizers.SGD  # unchanged default
    scaled = training.make_optimizer(config.make_config("cpu", bias_lr_scale=8.0), 10)
    assert isinstance(scaled, BiasScaledSGD) and scaled.bias_lr_scale == 8.0
    muon = training.make_optimizer(
        config.make_config("cpu", optimizer="muon", muon_learning_rate=0.02, bias_lr_scale=8.0), 10
    )
    assert muon.bias_lr_scale == 8.0
    restored = BiasScaledSGD.from_config(scaled.get_config())
    assert restored.bias_lr_scale == 8.0 and restored.nesterov


@pytest.mark.parametrize(
    "overrides, names",
    [
        ({"optimizer": "adamw", "bias_lr_scale": 4.0}, "bias_lr_scale"),
        ({"bias_lr_scale": 0.0}, "bias_lr_scale"),
        ({"recipe": "seed", "dirac": True}, "dirac"),
    ],
)
def test_bias_scale_and_dirac_refused_where_they_cannot_apply(overrides, names):
    overrides = dict(overrides)
    with pytest.raises(config.ConfigError, match=names):
        config.make_config(overrides.pop("recipe", "cpu"), **overrides)


def test_bias_scale_reaches_batchnorm_inside_a_compiled_training_step():
    """model.fit hands update_step backend variables, not the layer's: the biases must still be found."""
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]

    def moved(optimizer):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(3)])
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        bn, dense = model.layers
        return np.asarray(bn.beta), np.asarray(bn.gamma), np.asarray(dense.kernel)

    scaled = moved(BiasScaledSGD(0.1, bias_lr_scale=4.0, momentum=0.0))
    plain = moved(keras.optimizers.SGD(0.1, nesterov=True))
    np.testing.assert_allclose(scaled[0], 4 * plain[0], rtol=1e-5)  # beta starts at 0: its step, 4x
    np.testing.assert_allclose(scaled[1], plain[1], rtol=1e-6)
    np.testing.assert_allclose(scaled[2], plain[2], rtol=1e-6)


def test_a_model_saved_with_the_bias_scale_reloads_and_keeps_training(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization(), keras.layers.Dense(3)])
    model.compile(optimizer=BiasScaledSGD(0.1, bias_lr_scale=4.0), loss="mse")
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 3), "float32")
    model.fit(x, y, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(reloaded.optimizer, BiasScaledSGD) and reloaded.optimizer.bias_lr_scale == 4.0
    reloaded.fit(x, y, verbose=0)  # update_step needs the bias indices that build records
    assert reloaded.optimizer.bias_indices
