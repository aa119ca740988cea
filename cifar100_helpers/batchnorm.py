"""BatchNormalization trained with TensorFlow's fused kernel (the airbench models use it).

Keras 3 normalises with separate mean, variance and scale ops, several passes over the
activations; TensorFlow's fused kernel (oneDNN on a CPU, cuDNN on a GPU, XLA where compiled)
makes one. The package registers the layer on import, so a saved model loads wherever
``cifar100_helpers`` is imported; exports (``export``) need nothing of it.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="cifar100_helpers")
class FusedBatchNorm(layers.BatchNormalization):
    """``BatchNormalization`` whose training step is TensorFlow's one fused kernel.

    The airbench models train about 7% faster with it on 2 CPU cores (docs/results.md "Tuning cpu").
    Inference, the weights and the saved form are Keras's own; the moving variance is updated with
    the unbiased batch variance (TensorFlow's convention), a relative difference of 1/N.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = len(inputs.shape) == 4 and self.axis in (-1, 3) and self.scale and self.center
        # renorm and synchronized statistics (attributes of newer Keras only) keep Keras's own path
        fusable = fusable and not (getattr(self, "renorm", False) or getattr(self, "synchronized", False))
        if not (training and self.trainable and fusable) or mask is not None:
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, "float32"),  # as Keras does: statistics in float32 under mixed precision
            self.gamma,
            self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            is_training=True,
            exponential_avg_factor=1.0 - self.momentum,
        )
        self.moving_mean.assign(mean)
        self.moving_variance.assign(variance)
        return tf.cast(outputs, self.compute_dtype)
