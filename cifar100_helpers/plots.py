"""Figures for the notebooks and the report. Each function returns a matplotlib Figure."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from .files import replacing
from .input_pipeline import batch_augmenter


def image_grid(images: np.ndarray, titles: list[str], cols: int = 8, size: float = 1.3) -> plt.Figure:
    if not len(images):
        fig, ax = plt.subplots(figsize=(cols * size, size))
        ax.axis("off")
        ax.text(0.5, 0.5, "no test images to show", ha="center", va="center")
        return fig
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * (size + 0.25)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return fig


def augmentation_preview(images: np.ndarray, cfg, views: int = 6) -> plt.Figure:
    """Each row: an original image, then ``views`` training views of it, made by the recipe's own
    batch augmentation (flip, translate, random-resized-crop, RandAugment, MixUp, CutMix as configured)."""
    augment = batch_augmenter(cfg)
    labels = tf.one_hot(np.zeros(len(images), dtype=np.int32), 100)
    rows = [images]
    for v in range(views):
        seen, _ = augment(tf.constant(v, tf.int64), (tf.constant(images), labels))
        rows.append(np.clip(np.asarray(seen), 0, 255).astype(np.uint8))
    grid = np.stack(rows, axis=1).reshape(-1, *images.shape[1:])
    titles = [("original" if j == 0 else f"view {j}") for _ in images for j in range(views + 1)]
    return image_grid(grid, titles, cols=views + 1)


def superclass_samples(x: np.ndarray, fine: np.ndarray, ds) -> plt.Figure:
    """One row per superclass, named on the left: the first image of each of its five fine classes in ``x``
    (labels ``fine``), each titled with its class name."""
    members = [np.flatnonzero(ds.fine_to_coarse == c) for c in range(len(ds.coarse_names))]
    cols = max(len(m) for m in members)
    fig, axes = plt.subplots(len(members), cols, figsize=(cols * 1.0, len(members) * 1.1), squeeze=False)
    for row, (axes_row, classes) in enumerate(zip(axes, members, strict=True)):
        for ax in axes_row:
            ax.set(xticks=[], yticks=[])
            ax.spines[:].set_visible(False)
        axes_row[0].set_ylabel(ds.coarse_names[row].replace("_", " "), rotation=0, ha="right", va="center", fontsize=8)
        for ax, f in zip(axes_row, classes, strict=False):
            shown = np.flatnonzero(fine == f)
            if len(shown):
                ax.imshow(x[shown[0]])
            ax.set_title(ds.fine_names[f].replace("_", " "), fontsize=7)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def learning_rate_schedule(steps: np.ndarray, rates: np.ndarray, steps_per_epoch: int) -> plt.Figure:
    """The learning rate over the run's steps, epochs marked along the top."""
    fig, ax = plt.subplots(figsize=(8, 2.8))
    ax.plot(steps, rates)
    ax.set(xlabel="training step", ylabel="learning rate", title="learning-rate schedule", ylim=(0, None))
    top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    fig.tight_layout()
    return fig


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
    """Row-normalised confusion matrix (rows: true class) of a few classes (the 20 superclasses), each cell of 5% or
    more labelled with its percentage of the true class."""
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(10, 9))
    shown = ax.imshow(100 * rates, cmap="viridis", vmin=0, vmax=100)
    labels = [name.replace("_", " ") for name in names]
    ax.set_xticks(range(len(names)), labels, rotation=45, ha="right", rotation_mode="anchor", fontsize=10)
    ax.set_yticks(range(len(names)), labels, fontsize=10)
    for (row, col), rate in np.ndenumerate(rates):
        if rate >= 0.05:
            color = "black" if rate > 0.6 else "white"  # on viridis's yellow, on its dark blue
            ax.text(col, row, f"{100 * rate:.0f}", ha="center", va="center", fontsize=8, color=color)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(shown, ax=ax, fraction=0.046, label="% of the true class")
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
    """Save ``fig`` as PNG at ``path`` (stable names, for reuse) and display that PNG in the notebook.
    The file itself is shown, not the figure: a figure displays as text only (``<Figure size ...>``) in a
    kernel whose matplotlib backend is not the inline one, as in the pipeline's kernel, where TensorFlow
    imports matplotlib before ipykernel can choose the backend."""
    from IPython.display import Image, display

    with replacing(path) as partial:
        fig.savefig(partial, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    display(Image(filename=str(path)))


def sorted_class_accuracy(class_accuracy: dict[str, float]) -> plt.Figure:
    """Every class's test accuracy, best to worst; classes without test images (None) are named in the title."""
    ranked = sorted(((n, a) for n, a in class_accuracy.items() if a is not None), key=lambda item: -item[1])
    absent = [n for n, a in class_accuracy.items() if a is None]
    title = "accuracy of every class" + (f" (no test images: {', '.join(absent)})" if absent else "")
    fig, ax = plt.subplots(figsize=(16, 4))
    ax.bar(range(len(ranked)), [a for _, a in ranked], color="tab:blue")
    ax.set_xticks(range(len(ranked)), [n for n, _ in ranked], rotation=90, fontsize=6)
    ax.set(ylabel="test top-1", ylim=(0, 1), xlim=(-1, len(ranked)))
    ax.set_title(textwrap.fill(title, 200), fontsize=9)
    fig.tight_layout()
    return fig


def reliability(
    probs: np.ndarray, labels: np.ndarray, scaled: np.ndarray | None = None, temperature: float | None = None
) -> plt.Figure:
    """Reliability diagram and confidence histogram, and after temperature scaling where one was fitted."""
    from .evaluation import calibration_bins, expected_calibration_error

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    shown = [(probs, "as trained")] + ([(scaled, f"temperature {temperature:.2f}")] if scaled is not None else [])
    for p, name in shown:
        b = calibration_bins(p, labels)
        used = b["count"] > 0
        ece = expected_calibration_error(p, labels)
        left.plot(b["confidence"][used], b["accuracy"][used], "o-", label=f"{name} (ECE {ece:.3f})")
        right.hist(p.max(axis=1), bins=20, range=(0, 1), alpha=0.6, label=name)
    left.set(xlabel="confidence", ylabel="accuracy", title="reliability (test)", xlim=(0, 1), ylim=(0, 1))
    right.set(xlabel="confidence of the prediction", ylabel="test images", title="confidence histogram")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_grid(images: np.ndarray, maps: np.ndarray, titles: list[str], cols: int = 6) -> plt.Figure:
    """Each image beside its Grad-CAM overlay."""
    rows = int(np.ceil(len(images) / cols))
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.2, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, cam, title) in enumerate(zip(images, maps, titles, strict=True)):
        a, b = axes[i // cols, 2 * (i % cols)], axes[i // cols, 2 * (i % cols) + 1]
        a.imshow(image)
        a.set_title(title, fontsize=6)
        b.imshow(image)
        b.imshow(cam, cmap="jet", alpha=0.45)
    fig.tight_layout()
    return fig


def epoch_speed(history: list[dict]) -> plt.Figure:
    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3))
    left.bar(epochs, [r["seconds"] for r in history])
    left.set(xlabel="epoch", ylabel="seconds", title="time per epoch")
    right.bar(epochs, [r["images_per_second"] for r in history], color="tab:orange")
    right.set(xlabel="epoch", ylabel="images/second", title="training throughput")
    fig.tight_layout()
    return fig


def accuracy_vs_time(rows: list[dict], groups: list[dict] | None = None) -> plt.Figure:
    """Best top-1 of each run against its training time (unranked runs hollow). Runs of a setting repeated over
    seeds (``groups`` from compare.group_runs) are drawn faint, with the setting's mean and error bars of one
    standard deviation both ways."""
    fig, ax = plt.subplots(figsize=(7, 4))
    repeated = [g for g in groups or [] if g["n"] > 1]
    in_group = {name for g in repeated for name in g["runs"]}
    for r in rows:
        style = {"color": "tab:blue"} if r["ranked"] else {"facecolors": "none", "edgecolors": "tab:gray"}
        minutes = r["training_seconds"] / 60 if "training_seconds" in r else r["training_minutes"]  # not rounded
        ax.scatter(minutes, r["best_top1"], alpha=0.35 if r["run"] in in_group else 1, **style)
        if r["run"] not in in_group:
            ax.annotate(r["run"], (minutes, r["best_top1"]), fontsize=7, xytext=(4, 2), textcoords="offset points")
    for g in repeated:
        minutes, best = g["training_minutes"], g["best_top1"]
        ax.errorbar(minutes["mean"], best["mean"], xerr=minutes["std"], yerr=best["std"], fmt="s", capsize=3,
                    color="tab:orange" if g["ranked"] else "tab:gray")  # fmt: skip
        ax.annotate(
            f"{g['group']} (n={g['n']})", (minutes["mean"], best["mean"]), fontsize=7, xytext=(4, -9),
            textcoords="offset points",
        )  # fmt: skip
    ax.set(xlabel="training minutes", ylabel="test top-1 (best, with TTA)", title="accuracy against training time")
    fig.tight_layout()
    return fig


def superclass_comparison(a: dict, b: dict) -> plt.Figure:
    """Per-superclass test accuracy of two runs side by side."""
    names = list(a["superclass_accuracy"])
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 6))
    for run, shift in ((a, -0.2), (b, 0.2)):  # None (no test images of that superclass) draws no bar
        values = [run["superclass_accuracy"].get(n) for n in names]
        ax.barh(y + shift, [np.nan if v is None else v for v in values], 0.4, label=run["run"])
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="superclass accuracy (test)", xlim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
