"""Grad-CAM: which parts of an image drove a prediction, from the gradients of the class score with
respect to the last convolutional feature map of the model."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def feature_layer(model: keras.Model):
    """The last top-level layer with a spatial feature map (more than 1x1, more than 3 channels), or None
    when the model hides it inside a nested backbone."""
    for layer in reversed(model.layers):
        shape = layer.output.shape
        if len(shape) == 4 and (shape[1] is None or shape[1] > 1) and shape[-1] > 3:
            return layer
    return None


def heatmaps(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Grad-CAM maps in [0, 1] at the images' size for the given class of each image."""
    layer = feature_layer(model)
    if layer is None:
        return None
    probe = keras.Model(model.inputs, [layer.output, model.output])
    with tf.GradientTape() as tape:
        features, probs = probe(tf.convert_to_tensor(images), training=False)
        score = tf.gather(probs, tf.convert_to_tensor(classes), batch_dims=1)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[..., None]
    cam = tf.image.resize(cam, images.shape[1:3])[..., 0].numpy()
    return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)
