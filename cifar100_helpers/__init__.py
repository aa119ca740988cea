"""Helpers for the CIFAR-100 10-epoch study: data, recipes, training, evaluation, plots, and the commands that run
and compare runs. Importing the package loads no TensorFlow; the modules that train or evaluate do, quietly
(tensorflow_startup.py). Before ``keras.models.load_model`` on a run's model, ``import cifar100_helpers.models``:
it registers the custom layer (FusedBatchNorm) and optimizers that saved models name.

Keras runs on TensorFlow here whatever ``KERAS_BACKEND`` or ``~/.keras/keras.json`` say: importing the package sets
``KERAS_BACKEND=tensorflow`` for this process and the notebook kernels it starts, and refuses a Keras already
imported on another backend."""

import os
import sys

from . import tensorflow_startup
from .errors import ConfigError


def use_tensorflow_backend() -> None:
    """Keras on TensorFlow: ``KERAS_BACKEND`` set before Keras is imported (it outranks keras.json); a Keras
    already loaded on another backend (jax, torch) cannot switch, so it is refused."""
    os.environ["KERAS_BACKEND"] = "tensorflow"
    keras = sys.modules.get("keras")
    backend = getattr(getattr(keras, "backend", None), "backend", None)
    if backend is not None and backend() != "tensorflow":
        raise ConfigError(
            f"Keras runs on the {backend()} backend; this project needs tensorflow: set KERAS_BACKEND=tensorflow "
            "(or restart the kernel and import cifar100_helpers before keras)."
        )


use_tensorflow_backend()
tensorflow_startup.install()

__version__ = "0.1.0"
