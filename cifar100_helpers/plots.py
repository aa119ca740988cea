"""Figures for the notebooks and the report. Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from .data import random_crop_flip


def image_grid(images: np.ndarray, titles: list[str], cols: int = 8, size: float = 1.3) -> plt.Figure:
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.25)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def augmentation_preview(images: np.ndarray, pad: int, flip: bool, views: int = 6, seed: int = 0) -> plt.Figure:
    """Each row: an original image, then ``views`` random training views of it."""
    rows = [images]
    for v in range(views):
        rows.append(random_crop_flip(tf.constant(images), pad, flip, tf.constant([seed, v], tf.int64)).numpy())
    grid = np.stack(rows, axis=1).reshape(-1, *images.shape[1:])
    titles = [("original" if j == 0 else f"view {j}") for _ in images for j in range(views + 1)]
    return image_grid(grid, titles, cols=views + 1)


def training_curves(history: list[dict]) -> plt.Figure:
    epochs = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, (key, label) in zip(axes[:2], [("loss", "loss"), ("accuracy", "top-1 accuracy")], strict=True):
        ax.plot(epochs, [r[key] for r in history], "o-", label="train")
        if any(r.get(f"val_{key}") is not None for r in history):
            ax.plot(epochs, [r.get(f"val_{key}") for r in history], "o-", label="validation")
        ax.set(xlabel="epoch", title=label)
        ax.legend()
    axes[2].plot(epochs, [r["learning_rate"] for r in history], "o-")
    axes[2].set(xlabel="epoch", title="learning rate at epoch end")
    fig.tight_layout()
    return fig


def confusion_matrix(matrix: np.ndarray, names: tuple[str, ...], title: str) -> plt.Figure:
    """Row-normalised confusion matrix (rows: true class)."""
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(9, 8))
    shown = ax.imshow(rates, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return fig


def class_accuracy_bars(classes: dict[str, list]) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
    for ax, key, color in zip(axes, ("best", "worst"), ("tab:green", "tab:red"), strict=True):
        names, values = zip(*classes[key], strict=True)
        ax.barh(names[::-1], values[::-1], color=color)
        ax.set(title=f"{len(names)} {key} classes", xlabel="test top-1", xlim=(0, 1))
    fig.tight_layout()
    return fig


def show(fig: plt.Figure, path) -> None:
    """Save ``fig`` as PNG at ``path`` (stable names, for reuse) and display it in the notebook."""
    from IPython.display import display

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    display(fig)
    plt.close(fig)
