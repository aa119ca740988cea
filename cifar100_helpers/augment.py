"""RandAugment for tf.data: per image, ``num_ops`` ops drawn at random, each at a random magnitude.

Keras's ``RandAugment`` layer draws its ops once per batch and runs every candidate op on the whole
batch; this one gives each image its own ops and magnitudes and computes only the op each image
drew. The 14 ops and their largest magnitudes are torchvision's: a magnitude of 1 is a
30 degree rotation, a 0.3 shear, a 45% translation, an enhancement factor of 1 +/- 0.9, four bits
of posterization and a solarize threshold of 0. Each layer splits the batch by op
(``tf.dynamic_partition``), runs each pixel op on its own images only, warps the images of all five
geometric ops in one per-image affine transform, and stitches the batch back together. Images are
float32 in [0, 255], of any fixed size.
"""

from __future__ import annotations

import math

import tensorflow as tf

MAX_ROTATE = math.radians(30.0)
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.45  # fraction of the image's height or width
MAX_ENHANCE = 0.9  # brightness, colour, contrast and sharpness factors lie in 1 +/- this
MAX_POSTERIZE_BITS = 4  # bits dropped from each 8-bit value


def blend(degenerate: tf.Tensor, images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """PIL's ImageEnhance: move from ``degenerate`` towards ``images`` by a factor 1 + 0.9 m
    (m < 0 moves towards the degenerate image, m > 0 away from it), clipped to [0, 255]."""
    factor = 1.0 + MAX_ENHANCE * magnitude
    return tf.clip_by_value(degenerate + factor * (images - degenerate), 0.0, 255.0)


def identity(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """The image unchanged."""
    return images


def auto_contrast(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Stretch each channel linearly so that its darkest value becomes 0 and its brightest 255."""
    low = tf.reduce_min(images, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2], keepdims=True)
    stretched = (images - low) * 255.0 / tf.maximum(high - low, 1e-3)
    return tf.where(high > low, stretched, images)


def equalize(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation of each channel: its values are mapped through their cumulative
    histogram, so they spread evenly over 0-255. One bincount serves the whole batch."""
    shape = tf.shape(images)
    n, pixels, channels = shape[0], shape[1] * shape[2], shape[3]
    histogram = channels * tf.range(n)[:, None, None, None] + tf.range(channels)  # one per image and channel
    bins = 256 * histogram + tf.cast(tf.round(images), tf.int32)
    size = n * channels * 256
    counts = tf.math.bincount(tf.reshape(bins, [-1]), minlength=size, maxlength=size, dtype=tf.float32)
    cdf = tf.cumsum(tf.reshape(counts, [n, channels, 256]), axis=-1)
    first = tf.reduce_min(tf.where(cdf > 0, cdf, tf.cast(pixels, tf.float32)), axis=-1, keepdims=True)
    spread = tf.cast(pixels, tf.float32) - first  # 0 for a channel of one value: left unchanged
    lut = tf.where(spread > 0, tf.maximum(cdf - first, 0.0) * 255.0 / tf.maximum(spread, 1.0), tf.range(256.0))
    return tf.gather(tf.reshape(lut, [-1]), bins)


def solarize(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Invert the values above a threshold that falls from 255 (nothing inverted) to 0 (all)."""
    return tf.where(images > 255.0 * (1.0 - tf.abs(magnitude)), 255.0 - images, images)


def posterize(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Keep only the top 8 - k bits of each value, k from 0 to 4 (k = 0 only rounds down)."""
    step = tf.pow(2.0, tf.round(MAX_POSTERIZE_BITS * tf.abs(magnitude)))
    return tf.floor(images / step) * step


def color(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Saturation: blend with the image's greyscale version."""
    return blend(tf.image.rgb_to_grayscale(images), images, magnitude)


def contrast(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Contrast: blend with a flat image of the mean grey level."""
    return blend(tf.reduce_mean(tf.image.rgb_to_grayscale(images), axis=[1, 2, 3], keepdims=True), images, magnitude)


def brightness(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Brightness: blend with a black image."""
    return blend(tf.zeros_like(images), images, magnitude)


def sharpness(images: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Sharpness: blend with the image smoothed by PIL's SMOOTH kernel, [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13,
    i.e. (9 x the 3x3 mean + 4 x the pixel) / 13, edges mirrored."""
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    smoothed = (9.0 * tf.nn.avg_pool2d(padded, 3, 1, "VALID") + 4.0 * images) / 13.0
    return blend(smoothed, images, magnitude)


PIXEL_OPS = (identity, auto_contrast, equalize, solarize, posterize, color, contrast, brightness, sharpness)
GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")  # one affine warp, see affine()
OPS = tuple(op.__name__ for op in PIXEL_OPS) + GEOMETRIC_OPS


def affine(images: tf.Tensor, op: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Rotate, shear or translate each image as its ``op`` says, all in one warp call (bilinear,
    edges mirrored); an image whose op is not geometric gets the identity transform."""
    height, width = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)

    def amount(name: str, largest) -> tf.Tensor:
        return tf.where(tf.equal(op, OPS.index(name)), largest * magnitude, 0.0)

    angle, shear_x, shear_y = amount("rotate", MAX_ROTATE), amount("shear_x", MAX_SHEAR), amount("shear_y", MAX_SHEAR)
    move_x, move_y = amount("translate_x", MAX_TRANSLATE * width), amount("translate_y", MAX_TRANSLATE * height)
    # each output pixel p samples the input at R(angle) @ [[1, shear_x], [shear_y, 1]] @ (p - centre) + centre - move
    cos, sin = tf.cos(angle), tf.sin(angle)
    a0, a1, b0, b1 = cos - sin * shear_y, cos * shear_x - sin, sin + cos * shear_y, sin * shear_x + cos
    cx, cy = (width - 1.0) / 2.0, (height - 1.0) / 2.0
    a2, b2 = cx - a0 * cx - a1 * cy - move_x, cy - b0 * cx - b1 * cy - move_y
    zeros = tf.zeros_like(angle)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1),
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )


def apply_op(images: tf.Tensor, op: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """Apply op ``op[i]`` (an index into OPS) at signed magnitude ``magnitude[i]`` in [-1, 1] to image i.
    The batch is split by op, so each image is computed once: one group per pixel op, then one group
    for all geometric ops, which share one warp."""
    group = tf.minimum(op, len(PIXEL_OPS))
    index = tf.dynamic_partition(tf.range(tf.shape(images)[0]), group, len(PIXEL_OPS) + 1)
    parts = [
        pixel_op(tf.gather(images, i), tf.gather(magnitude, i)[:, None, None, None])
        for pixel_op, i in zip(PIXEL_OPS, index[:-1], strict=True)
    ]
    geometric = index[-1]
    parts.append(affine(tf.gather(images, geometric), tf.gather(op, geometric), tf.gather(magnitude, geometric)))
    return tf.ensure_shape(tf.dynamic_stitch(index, parts), images.shape)  # stitching forgets the batch size


def sample(n: tf.Tensor, strength: float, seed: tf.Tensor, num_ops: int = 2) -> tuple[tf.Tensor, tf.Tensor]:
    """``num_ops`` x ``n`` op indices, uniform over OPS, and signed magnitudes, uniform in
    [-strength, strength]: each image draws its own op and magnitude in each of the ``num_ops`` layers."""
    op_seed, magnitude_seed, sign_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    ops = tf.random.stateless_uniform([num_ops, n], op_seed, maxval=len(OPS), dtype=tf.int32)
    magnitudes = tf.random.stateless_uniform([num_ops, n], magnitude_seed, maxval=strength)
    signs = tf.where(tf.random.stateless_uniform([num_ops, n], sign_seed) < 0.5, -1.0, 1.0)
    return ops, signs * magnitudes


def rand_augment(images: tf.Tensor, strength: float, seed: tf.Tensor, num_ops: int = 2) -> tf.Tensor:
    """RandAugment of a batch of 0-255 images (any dtype) with a stateless ``seed`` of shape [2]:
    ``num_ops`` ops in a row, each drawn per image with a magnitude uniform in [0, ``strength``]
    (``strength`` in [0, 1]; 1 is the largest magnitude of each op). Returns float32 in [0, 255]."""
    images = tf.cast(images, tf.float32)
    ops, magnitudes = sample(tf.shape(images)[0], strength, seed, num_ops)
    for layer in range(num_ops):
        images = apply_op(images, ops[layer], magnitudes[layer])
    return images
