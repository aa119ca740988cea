"""Test-set metrics: top-k with and without flip TTA, per-class and superclass views, mistakes."""

from __future__ import annotations

import json

import keras
import numpy as np

from .config import RunConfig
from .data import Cifar100
from .layout import write_atomic


def translated(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images shifted by (dy, dx) pixels, the uncovered border filled by reflection."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    h, w = images.shape[1:3]
    return padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def tta_views(images: np.ndarray, mode: str) -> list[np.ndarray]:
    """The test-time views averaged by ``mode``: none, flip (image and mirror), flip_translate
    (both, each also shifted one pixel up-left and down-right)."""
    views = [images]
    if mode in ("flip", "flip_translate"):
        views.append(images[:, :, ::-1])
    if mode == "flip_translate":
        views += [translated(v, d, d) for v in views[:2] for d in (-1, 1)]
    return views


def predict(model: keras.Model, images: np.ndarray, tta: str = "none", batch_size: int = 500) -> np.ndarray:
    """Class probabilities averaged over the ``tta`` views of each image."""
    views = tta_views(images, tta)
    return sum(model.predict(v, batch_size=batch_size, verbose=0) for v in views) / len(views)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest probabilities."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def per_class_accuracy(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    matrix = confusion(true, pred, n)
    return np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)


def ranked_classes(accuracy: np.ndarray, names: tuple[str, ...], k: int = 10) -> dict[str, list]:
    """The ``k`` best and worst classes as [name, accuracy] pairs (ties broken by class index)."""
    order = np.argsort(-accuracy, kind="stable")
    pairs = [[names[i], round(float(accuracy[i]), 4)] for i in order]
    return {"best": pairs[:k], "worst": pairs[::-1][:k]}


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]


def summarize(probs: np.ndarray, probs_tta: np.ndarray | None, ds: Cifar100, cfg: RunConfig) -> dict:
    """The numbers that go into ``metrics.json``."""
    labels = ds.test.fine
    pred = probs.argmax(axis=1)
    fine_acc = per_class_accuracy(labels, pred, len(ds.fine_names))
    metrics = {
        "recipe": cfg.recipe,
        "epochs": cfg.epochs,
        "over_budget": cfg.over_budget,
        "generated_data": cfg.generated,
        "test_images": int(len(labels)),
        "top1": top_k_accuracy(probs, labels, 1),
        "top5": top_k_accuracy(probs, labels, 5),
        "superclass_top1": float(np.mean(ds.fine_to_coarse[pred] == ds.test.coarse)),
        "classes": ranked_classes(fine_acc, ds.fine_names),
    }
    if probs_tta is not None:
        metrics["tta"] = cfg.tta
        metrics["top1_tta"] = top_k_accuracy(probs_tta, labels, 1)
        metrics["top5_tta"] = top_k_accuracy(probs_tta, labels, 5)
    return metrics


def headline(metrics: dict) -> str:
    lines = [f"test top-1 {metrics['top1']:.2%}   top-5 {metrics['top5']:.2%}   (no TTA)"]
    if "top1_tta" in metrics:
        lines.append(f"test top-1 {metrics['top1_tta']:.2%}   top-5 {metrics['top5_tta']:.2%}   ({metrics['tta']} TTA)")
    lines.append(f"superclass top-1 {metrics['superclass_top1']:.2%} on {metrics['test_images']} test images")
    return "\n".join(lines)


def mistake_captions(probs: np.ndarray, labels: np.ndarray, index: np.ndarray, names: tuple[str, ...]) -> list[str]:
    pred = probs[index].argmax(axis=1)
    return [f"{names[t]} →\n{names[p]} ({probs[i, p]:.0%})" for i, t, p in zip(index, labels[index], pred, strict=True)]


def save_metrics(metrics: dict, path) -> None:
    write_atomic(path, json.dumps(metrics, indent=2) + "\n")
