"""Helpers for the CIFAR-100 10-epoch study: data, recipes, training, evaluation, plots, pipeline."""

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_into(path: str):
    """File descriptor 2 appends to ``path`` for the duration, so that what C++ libraries write there (TensorFlow's
    start-up notes, Ray's connection retries), which Python's ``sys.stderr`` never sees, stays off the terminal."""
    sys.stderr.flush()
    saved, target = os.dup(2), os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(target, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and probe its devices with the C++ start-up log lines (oneDNN notes,
    "failed call to cuInit" on machines without a GPU) kept out of notebooks and reports.
    Python errors still surface as usual."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with stderr_into(os.devnull):
        import tensorflow

        tensorflow.config.list_physical_devices("GPU")


import_tensorflow_quietly()
from . import batchnorm  # noqa: E402, F401 (registers FusedBatchNorm, so saved models load)

__version__ = "0.1.0"
