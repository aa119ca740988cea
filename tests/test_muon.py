import keras
import numpy as np
import pytest

from cifar100_helpers import config, data, evaluation, models, training
from cifar100_helpers.muon import MuonConvSGD, orthogonalized
from cifar100_helpers.running.run_dir import RunDir


@pytest.mark.parametrize("shape", [(3, 3, 24, 64), (3, 3, 64, 256), (3, 3, 4, 64)])  # wide, tall and square-ish
def test_orthogonalized_update_has_all_singular_values_near_one(shape):
    gradient = np.random.default_rng(0).normal(size=shape).astype("float32")
    gradient[..., 0] *= 100  # one dominant direction, as raw gradients have
    matrix = np.asarray(orthogonalized(keras.ops.convert_to_tensor(gradient), steps=5)).reshape(-1, shape[-1])
    singular = np.linalg.svd(matrix, compute_uv=False)
    assert singular.min() > 0.5 and singular.max() < 1.5  # the raw gradient's spread is over 100x


def test_kernels_keep_their_norm_and_step_by_the_muon_rate():
    optimizer = MuonConvSGD(0.1, muon_ratio=0.5, momentum=0.9)
    rng = np.random.default_rng(1)
    kernel = keras.Variable(rng.normal(size=(3, 3, 8, 16)).astype("float32") * 7, name="kernel")
    bias = keras.Variable(np.ones(16, "float32"), name="bias")
    optimizer.build([kernel, bias])
    before = np.asarray(kernel) * 4 / np.linalg.norm(np.asarray(kernel))  # rescaled to sqrt(16)
    optimizer.apply([rng.normal(size=(3, 3, 8, 16)).astype("float32"), np.ones(16, "float32")], [kernel, bias])
    moved = np.linalg.norm(np.asarray(kernel) - before) / np.linalg.norm(before)
    assert 0.02 < moved < 0.08  # a relative step of about muon_ratio * learning_rate = 0.05
    sgd = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
    reference = keras.Variable(np.ones(16, "float32"))
    sgd.apply([np.ones(16, "float32")], [reference])
    np.testing.assert_allclose(np.asarray(bias), np.asarray(reference))  # the rest is plain Nesterov SGD


@pytest.mark.slow  # training to a learning threshold (make test-slow)
def test_muon_recipe_learns_and_its_model_reloads(archive, tmp_path):
    cfg = config.make_config(
        "cpu", epochs=3, batch_size=64, learning_rate=0.1, optimizer="muon", muon_learning_rate=0.05, verify=False
    )
    ds = data.load(archive, verify=False, val_fraction=cfg.val_fraction)
    run = RunDir(tmp_path / "run").create()
    training.train(models.build(cfg, ds.train.x), ds, cfg, run, interactive=False)
    model = keras.models.load_model(run.model)  # the optimizer's class is registered for compile=True
    assert isinstance(model.optimizer, MuonConvSGD) and model.optimizer.muon_ratio == pytest.approx(0.5)
    assert evaluation.top_k_accuracy(evaluation.predict(model, ds.test.x), ds.test.fine, 1) > 0.2


def test_muon_without_its_rate_is_refused():
    with pytest.raises(config.ConfigError, match="muon_learning_rate"):
        config.make_config("cpu", optimizer="muon")
