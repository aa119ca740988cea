"""Helpers for the CIFAR-100 10-epoch study: data, recipes, training, evaluation, plots, pipeline."""

import os


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with the C++ start-up log lines (oneDNN notes,
    "failed call to cuInit" on machines without a GPU) kept out of notebooks and reports.
    Python errors still surface as usual."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


import_tensorflow_quietly()
from . import batchnorm  # noqa: E402, F401 (registers FusedBatchNorm, so saved models load)

__version__ = "0.1.0"
