"""Nesterov SGD whose BatchNorm biases take larger steps (airbench's bias scaler).

The airbench speedruns step BatchNorm biases with a learning rate 64 times the rest: a bias
shifts a whole channel, and at the rate that suits the filters it moves too slowly for a
10-epoch budget. Keras optimizers have one learning rate for all variables, so this one scales
the rate for variables named ``beta`` (BatchNormalization's bias); weight decay is excluded for
them anyway (training.make_optimizer).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="cifar100_helpers")
class BiasScaledSGD(keras.optimizers.SGD):
    """``keras.optimizers.SGD`` (Nesterov by default) with ``bias_lr_scale`` times the learning rate
    for BatchNorm biases."""

    def __init__(self, learning_rate=0.01, bias_lr_scale=1.0, **kwargs):
        super().__init__(learning_rate, **{"nesterov": True, **kwargs})
        self.bias_lr_scale = bias_lr_scale

    def build(self, variables):
        super().build(variables)  # update_step may see backend variables, so biases are found here, by index
        self.bias_indices = {self._get_variable_index(v) for v in variables if v.name == "beta"}

    def update_step(self, gradient, variable, learning_rate):
        if self._get_variable_index(variable) in self.bias_indices:
            learning_rate = learning_rate * self.bias_lr_scale
        return super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "bias_lr_scale": self.bias_lr_scale}
