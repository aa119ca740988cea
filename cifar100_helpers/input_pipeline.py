"""The tf.data input pipeline: CIFAR-100 splits as batches for Keras, shuffled per epoch with a seed and augmented
on the fly (flip, translate, random-resized crop, RandAugment, MixUp, CutMix as the recipe says)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .augment import rand_augment
from .data import NUM_FINE, Split


def random_crop_flip(images: tf.Tensor, pad: int, flip: bool, seed: tf.Tensor) -> tf.Tensor:
    """Batch-wise random translation (reflect-pad then crop back) and horizontal flip."""
    n, h, w = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    seeds = tf.random.experimental.stateless_split(seed, 3)
    if flip:
        flips = tf.random.stateless_uniform([n], seeds[0]) < 0.5
        images = tf.where(flips[:, None, None, None], tf.reverse(images, axis=[2]), images)
    if pad:
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        dy = tf.random.stateless_uniform([n, 1], seeds[1], maxval=2 * pad + 1, dtype=tf.int32)
        dx = tf.random.stateless_uniform([n, 1], seeds[2], maxval=2 * pad + 1, dtype=tf.int32)
        images = tf.gather(padded, dy + tf.range(h)[None], axis=1, batch_dims=1)
        images = tf.gather(images, dx + tf.range(w)[None], axis=2, batch_dims=1)
    return images


def random_resized_crop(images: tf.Tensor, min_scale: float, seed: tf.Tensor) -> tf.Tensor:
    """Batch-wise random-resized-crop: per image a box covering a random fraction of the area in
    [min_scale, 1] with aspect ratio in [3/4, 4/3], resized back to the input size (float32)."""
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    area = tf.random.stateless_uniform([n], seeds[0], min_scale, 1.0)
    ratio = tf.exp(tf.random.stateless_uniform([n], seeds[1], np.log(3 / 4), np.log(4 / 3)))
    box_h, box_w = tf.minimum(tf.sqrt(area / ratio), 1.0), tf.minimum(tf.sqrt(area * ratio), 1.0)
    top = tf.random.stateless_uniform([n], seeds[2]) * (1 - box_h)
    left = tf.random.stateless_uniform([n], seeds[3]) * (1 - box_w)
    boxes = tf.stack([top, left, top + box_h, left + box_w], axis=1)
    return tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, tf.range(n), [h, w])


def one_hot(split: Split) -> np.ndarray:
    return np.eye(NUM_FINE, dtype=np.float32)[split.fine]


def batch_augmenter(cfg, size: tf.Variable | None = None):
    """The training-time transformation of one batch (images, one-hot labels) for a config:
    flip + translate, random-resized-crop, then per-image RandAugment (:mod:`.augment`), MixUp and CutMix
    (Keras's layers) where enabled, then the current progressive image size where ``size`` is given.
    These steps yield float32 under any global dtype policy: mixed precision is for the model, not tf.data."""
    import keras

    steps = []
    for layer in ([keras.layers.MixUp(cfg.mixup, seed=cfg.seed, dtype="float32")] if cfg.mixup else []) + (
        [keras.layers.CutMix(cfg.cutmix, seed=cfg.seed, dtype="float32")] if cfg.cutmix else []
    ):
        steps.append(lambda x, y, layer=layer: tuple(layer({"images": x, "labels": y}).values()))
    if size is not None:
        steps.append(lambda x, y: (tf.image.resize(x, tf.stack([size, size])), y))

    def augment(index, batch):
        images, labels = batch
        seed, crop_seed, rand_augment_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([tf.cast(cfg.seed, tf.int64), index]), 3)
        )
        images = random_crop_flip(images, cfg.crop_pad, cfg.flip, seed)
        if cfg.crop_scale:
            images = random_resized_crop(images, cfg.crop_scale, crop_seed)
        if cfg.randaugment:
            images = rand_augment(images, cfg.randaugment, rand_augment_seed)
        for step in steps:
            images, labels = step(images, labels)
        return images, labels

    return augment


def train_dataset(
    split: Split, batch_size: int, cfg, size: tf.Variable | None = None, epoch: tf.Variable | None = None
) -> tf.data.Dataset:
    """Augmented, batched, prefetched training data with one-hot labels. The order and the random
    augmentations depend only on (seed, epoch), so a resumed run sees exactly the batches an
    uninterrupted one would; ``epoch`` is set by the training loop at the start of every epoch."""
    epoch = tf.constant(0, tf.int64) if epoch is None else epoch
    images, labels = tf.constant(split.x), tf.constant(one_hot(split))

    def epoch_order(_):
        seed = tf.stack([tf.constant(cfg.seed, tf.int64), tf.cast(epoch, tf.int64)])
        return tf.data.Dataset.from_tensor_slices(tf.random.experimental.stateless_shuffle(tf.range(len(split)), seed))

    augment = batch_augmenter(cfg, size)

    def batch(step, index):
        return augment(
            tf.cast(epoch, tf.int64) * 1_000_000 + step, (tf.gather(images, index), tf.gather(labels, index))
        )

    ds = tf.data.Dataset.from_tensors(0).flat_map(epoch_order).batch(batch_size, drop_remainder=True)
    ds = ds.apply(tf.data.experimental.assert_cardinality(len(split) // batch_size))  # flat_map hides it
    ds = ds.enumerate().map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, batch_size: int) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((split.x, one_hot(split))).batch(batch_size).prefetch(tf.data.AUTOTUNE)
