"""Grad-CAM: which parts of an image drove a prediction, from the gradients of the class score with
respect to the last spatial feature map of the model (inside a pretrained backbone too)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def spatial(layer) -> bool:
    """A feature map: 4-D, larger than 1x1 (or of variable size), more than 3 channels."""
    shape = layer.output.shape
    return len(shape) == 4 and (shape[1] is None or shape[1] > 1) and shape[-1] > 3


def feature_layer(model: keras.Model):
    """The last layer of ``model`` with a spatial feature map, looking inside nested backbones:
    returns (top-level layer, layer inside it or None), or None when there is no such map."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.Model):
            inner = feature_layer(layer)
            if inner is not None:
                return layer, inner[0]
        elif spatial(layer):
            return layer, None
    return None


def heatmaps(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Grad-CAM maps in [0, 1] at the images' size for the given class of each image. The models here
    are chains of top-level layers; the chain is run layer by layer to reach the feature map."""
    found = feature_layer(model)
    if found is None:
        return None
    outer, inner = found
    probe = keras.Model(outer.inputs, [inner.output, outer.output]) if inner is not None else None
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        for layer in model.layers[1:]:  # the first is the InputLayer
            if layer is outer and probe is not None:
                features, x = probe(x, training=False)
                tape.watch(features)
            else:
                x = layer(x, training=False)
                if layer is outer:
                    features = x
        score = tf.gather(tf.cast(x, tf.float32), tf.convert_to_tensor(classes), batch_dims=1)
    grads = tape.gradient(score, features)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(tf.cast(weights * features, tf.float32), axis=-1))[..., None]
    cam = tf.image.resize(cam, images.shape[1:3])[..., 0].numpy()
    return cam / np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)
