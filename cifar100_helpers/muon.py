"""Muon for convolution filters, Nesterov SGD for everything else, in one Keras optimizer.

Muon (Keller Jordan, 2024; used by the airbench CIFAR speedruns) replaces a filter bank's momentum
update by its nearest semi-orthogonal matrix, computed with a few Newton-Schulz iterations, so
every direction of the update moves by about the same amount. As in airbench, each filter bank is
first rescaled to a fixed norm (sqrt of its output channels): the BatchNorm after every convolution
makes the network blind to that scale, and it turns the learning rate into the relative size of
each step. ``keras.optimizers.Muon`` is not used: it only treats 2-D weights (convolution kernels
fall back to AdamW) and changes between Keras versions.
"""

from __future__ import annotations

import keras
from keras import ops

from .sgd import BiasScaledSGD

NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # the quintic's coefficients from the Muon write-up


def orthogonalized(update, steps: int):
    """An approximately semi-orthogonal matrix near ``update`` (any rank >= 2, flattened to
    (everything but the last axis, output channels)): singular values pushed into about [0.7, 1.2]."""
    a, b, c = NEWTON_SCHULZ
    x = ops.reshape(update, (-1, update.shape[-1]))
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = ops.transpose(x)
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        gram = x @ ops.transpose(x)
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = ops.transpose(x)
    return ops.reshape(x, update.shape)


@keras.saving.register_keras_serializable(package="cifar100_helpers")
class MuonConvSGD(BiasScaledSGD):
    """Nesterov SGD (``learning_rate``, ``momentum``, ``weight_decay``) for 0- to 2-D weights (BatchNorm,
    the classifier); Muon for 4-D convolution kernels at ``muon_ratio`` times the current learning
    rate, which follows the same schedule. Weight decay does not matter for the kernels: each step
    first resets their norm."""

    def __init__(self, learning_rate=0.01, muon_ratio=1.0, newton_schulz_steps=3, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.muon_ratio = muon_ratio
        self.newton_schulz_steps = newton_schulz_steps

    def update_step(self, gradient, variable, learning_rate):
        if len(variable.shape) != 4:
            return super().update_step(gradient, variable, learning_rate)
        momentum = self.momentums[self._get_variable_index(variable)]  # here the plain gradient sum
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(momentum, self.momentum * momentum + gradient)
        direction = orthogonalized(gradient + self.momentum * momentum, self.newton_schulz_steps)
        norm = ops.sqrt(ops.sum(ops.square(variable)))
        target = float(variable.shape[-1]) ** 0.5
        step = ops.cast(learning_rate, variable.dtype) * self.muon_ratio
        self.assign(variable, variable * (target / (norm + 1e-12)) - step * direction)

    def get_config(self):
        return {**super().get_config(), "muon_ratio": self.muon_ratio, "newton_schulz_steps": self.newton_schulz_steps}
