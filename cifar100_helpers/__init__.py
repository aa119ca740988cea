"""Helpers for the CIFAR-100 10-epoch study: data, recipes, training, evaluation, plots, and the commands that run
and compare runs. Importing the package loads no TensorFlow; the modules that train or evaluate do, quietly
(tensorflow_startup.py). Before ``keras.models.load_model`` on a run's model, ``import cifar100_helpers.models``:
it registers the custom layer (FusedBatchNorm) and optimizers that saved models name."""

from . import tensorflow_startup

tensorflow_startup.install()

__version__ = "0.1.0"
