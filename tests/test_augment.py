"""Per-image RandAugment (augment.py) and the dtype the training pipeline yields under mixed precision."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifar100_helpers import augment, config, data, input_pipeline

SEED = tf.constant([3, 4], tf.int64)


def random_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3)).astype(np.float32)


def test_each_image_draws_its_own_ops():
    ops, magnitudes = augment.sample(64, 0.3, SEED)
    assert ops.shape == magnitudes.shape == (2, 64)
    assert all(len(np.unique(layer)) >= 8 for layer in ops.numpy())  # not one op per batch
    assert not np.array_equal(ops[0], ops[1])
    assert np.abs(magnitudes.numpy()).max() <= 0.3 and len(np.unique(magnitudes.numpy())) == 128
    same = np.repeat(random_images(1, 32), 64, axis=0)
    out = augment.rand_augment(tf.constant(same), 0.3, SEED).numpy()
    assert len({image.tobytes() for image in out}) > 48  # one image, many different results


def test_apply_op_gives_each_image_its_own_op():
    images = random_images(28)
    op = np.tile(np.arange(len(augment.OPS), dtype=np.int32), 2)
    magnitude = np.linspace(-1, 1, 28).astype(np.float32)
    batch = augment.apply_op(tf.constant(images), tf.constant(op), tf.constant(magnitude)).numpy()
    for i in range(28):
        alone = augment.apply_op(
            tf.constant(images[i : i + 1]), tf.constant(op[i : i + 1]), tf.constant(magnitude[i : i + 1])
        )
        assert np.allclose(batch[i], alone.numpy()[0], atol=1e-3), augment.OPS[op[i]]


def test_output_is_float32_in_range_and_seeded():
    images = tf.constant(random_images(32).astype(np.uint8))
    out = augment.rand_augment(images, 1.0, SEED)
    assert out.dtype == tf.float32 and out.shape == images.shape
    assert out.numpy().min() >= 0 and out.numpy().max() <= 255
    assert np.array_equal(out, augment.rand_augment(images, 1.0, SEED))
    assert not np.array_equal(out, augment.rand_augment(images, 1.0, tf.constant([3, 5], tf.int64)))


@pytest.mark.parametrize("name", [n for n in augment.OPS if n not in ("auto_contrast", "equalize")])
def test_ops_with_a_magnitude_do_nothing_at_zero_and_change_the_image_at_full(name):
    images = tf.constant(random_images(4))
    op = tf.fill([4], augment.OPS.index(name))
    assert np.allclose(augment.apply_op(images, op, tf.zeros([4])), images, atol=1e-3)
    if name != "identity":
        assert not np.allclose(augment.apply_op(images, op, tf.ones([4])), images, atol=1.0)


def test_auto_contrast_and_equalize_spread_values_over_0_to_255():
    images = tf.constant(random_images(4) * 0.25 + 100)  # values 100-164
    for name in ("auto_contrast", "equalize"):
        out = augment.apply_op(images, tf.fill([4], augment.OPS.index(name)), tf.zeros([4])).numpy()
        assert out.min(axis=(1, 2)).max() <= 1 and out.max(axis=(1, 2)).min() >= 254, name


def test_geometric_ops_rotate_and_translate_pixels():
    images = random_images(1, 8)
    quarter_turn = 90 / 30  # magnitude 1 is 30 degrees
    rotated = augment.apply_op(
        tf.constant(images), tf.constant([augment.OPS.index("rotate")]), tf.constant([quarter_turn])
    )
    assert np.allclose(rotated[0], np.rot90(images[0]), atol=1e-3)
    two_pixels = 2 / (augment.MAX_TRANSLATE * 8)
    moved = augment.apply_op(
        tf.constant(images), tf.constant([augment.OPS.index("translate_x")]), tf.constant([two_pixels])
    )
    assert np.allclose(moved[0, :, 2:], images[0, :, :-2], atol=1e-3)


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("mixing", [{}, {"mixup": 0.2, "cutmix": 1.0}])
def test_train_dataset_yields_float32_under_mixed_precision(archive, mixed_policy, mixing):
    split = data.load(archive, verify=False).train
    cfg = config.make_config("transfer", weights=None, **mixing)
    batches = input_pipeline.train_dataset(split, 16, cfg)
    assert [spec.dtype for spec in batches.element_spec] == [tf.float32, tf.float32]
    images, labels = next(iter(batches))
    assert images.shape == (16, 32, 32, 3) and images.dtype == tf.float32 and labels.dtype == tf.float32
    assert images.numpy().min() >= 0 and images.numpy().max() <= 255
