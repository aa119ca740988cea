"""Helpers for the CIFAR-100 10-epoch study: data, recipes, training, evaluation, plots, pipeline."""

__version__ = "0.1.0"
