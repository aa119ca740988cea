"""Test-set metrics: top-k with and without test-time augmentation (none, flip, flip_translate, flip_grid), per-class
and superclass views, calibration, mistakes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import keras
import numpy as np

from .config import RunConfig
from .data import Cifar100
from .files import write_atomic


def translated(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images shifted by (dy, dx) pixels, the uncovered border filled by reflection."""
    pad = max(abs(dy), abs(dx))
    padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
    h, w = images.shape[1:3]
    return padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]


# Each TTA mode: whether the mirror image is added, and the (dy, dx) shifts applied to every view.
TTA_VIEWS = {
    "none": (False, ((0, 0),)),
    "flip": (True, ((0, 0),)),
    "flip_translate": (True, ((0, 0), (-1, -1), (1, 1))),
    "flip_grid": (True, tuple((dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2))),
}


def tta_views(images: np.ndarray, mode: str) -> Iterator[np.ndarray]:
    """The test-time views averaged by ``mode``, one at a time: none, flip (image and mirror),
    flip_translate (both, each also shifted one pixel up-left and down-right: 6 views), flip_grid (both at
    the nine shifts of 0 or 2 pixels each way: 18 views)."""
    mirror, shifts = TTA_VIEWS[mode]
    bases = [images, images[:, :, ::-1]] if mirror else [images]
    return (translated(v, dy, dx) if dy or dx else v for dy, dx in shifts for v in bases)


def predict(model: keras.Model, images: np.ndarray, tta: str = "none", batch_size: int = 500) -> np.ndarray:
    """Class probabilities averaged over the ``tta`` views of each image (one view in memory at a time)."""
    total, count = 0, 0
    for view in tta_views(images, tta):
        total, count = total + model.predict(view, batch_size=batch_size, verbose=0), count + 1
    return total / count


def true_class_ranks(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Where each row's label stands among its probabilities: 1 for the prediction, 2 for the runner-up, ...
    (ties in class order, as the printed top 5)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    return 1 + np.argmax(order == labels[:, None], axis=1)


def top_k_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the label is among the ``k`` highest probabilities of its row, else 0.0."""
    return (true_class_ranks(probs, labels) <= k).astype(np.float64)


def top_k_accuracy(probs: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest probabilities."""
    return float(top_k_correct(probs, labels, k).mean())


def confusion(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return np.bincount(true * n + pred, minlength=n * n).reshape(n, n)


def per_class_accuracy(true: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Accuracy of each class; NaN for a class without test images (a subset, or one's own data)."""
    matrix = confusion(true, pred, n)
    counts = matrix.sum(axis=1)
    return np.where(counts > 0, np.diag(matrix) / np.maximum(counts, 1), np.nan)


def by_name(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float | None]:
    return {name: None if np.isnan(v) else round(float(v), 4) for name, v in zip(names, values, strict=True)}


def ranked_classes(accuracy: np.ndarray, names: tuple[str, ...], k: int = 10) -> dict[str, list]:
    """The ``k`` best and worst classes that have test images, as [name, accuracy] pairs (ties broken
    by class index)."""
    order = [i for i in np.argsort(-accuracy, kind="stable") if not np.isnan(accuracy[i])]
    pairs = [[names[i], round(float(accuracy[i]), 4)] for i in order]
    return {"best": pairs[:k], "worst": pairs[::-1][:k]}


def confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]


def summarize(
    probs: np.ndarray,
    probs_tta: np.ndarray | None,
    ds: Cifar100,
    cfg: RunConfig,
    val_probs: np.ndarray | None = None,
    *,
    parameters: int,
) -> dict:
    """The numbers that go into ``metrics.json``: the model's ``parameters``, accuracies with 95% bootstrap intervals,
    per-class and per-superclass accuracy, the most-confused pairs, and calibration before and after a temperature
    fitted on the validation split (never the test split)."""
    labels = ds.test.fine
    pred = probs.argmax(axis=1)
    fine_acc = per_class_accuracy(labels, pred, len(ds.fine_names))
    coarse_acc = per_class_accuracy(ds.test.coarse, ds.fine_to_coarse[pred], len(ds.coarse_names))
    metrics = {
        "recipe": cfg.recipe,
        "epochs": cfg.epochs,
        "over_budget": cfg.over_budget,
        "generated_data": cfg.generated,
        "parameters": int(parameters),
        "test_images": int(len(labels)),
        "superclass_top1": float(np.mean(ds.fine_to_coarse[pred] == ds.test.coarse)),
        "classes": ranked_classes(fine_acc, ds.fine_names),
        "class_accuracy": by_name(fine_acc, ds.fine_names),  # None: no test images of that class
        "superclass_accuracy": by_name(coarse_acc, ds.coarse_names),
        "classes_without_test_images": [ds.fine_names[i] for i in np.flatnonzero(np.isnan(fine_acc))],
        "confused_pairs": confused_pairs(confusion(labels, pred, len(ds.fine_names)), ds.fine_names),
    }
    views = {"": probs} | ({"_tta": probs_tta} if probs_tta is not None else {})
    for suffix, p in views.items():
        for k in (1, 5):
            correct = top_k_correct(p, labels, k)
            metrics[f"top{k}{suffix}"] = float(correct.mean())
            metrics[f"top{k}{suffix}_ci95"] = bootstrap_interval(correct, seed=cfg.seed)
    if probs_tta is not None:
        metrics["tta"] = cfg.tta
    metrics["calibration"] = {
        "ece": expected_calibration_error(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
    }
    if val_probs is not None and len(val_probs):  # a temperature needs a validation split to be fitted on
        temperature = fit_temperature(val_probs, ds.val.fine)
        scaled = with_temperature(probs, temperature)
        metrics["calibration"] |= {
            "temperature": round(temperature, 4),
            "ece_scaled": expected_calibration_error(scaled, labels),
            "nll_scaled": negative_log_likelihood(scaled, labels),
        }
    return metrics


def headline(metrics: dict) -> str:
    def line(suffix: str, label: str) -> str:
        lo1, hi1 = metrics[f"top1{suffix}_ci95"]
        return (
            f"test top-1 {metrics[f'top1{suffix}']:.2%} (95% CI {lo1:.2%}-{hi1:.2%})   "
            f"top-5 {metrics[f'top5{suffix}']:.2%}   ({label})"
        )

    lines = [line("", "no TTA")]
    if "top1_tta" in metrics:
        lines.append(line("_tta", f"{metrics['tta']} TTA"))
    lines.append(f"superclass top-1 {metrics['superclass_top1']:.2%} on {metrics['test_images']} test images")
    return "\n".join(lines)


def mistake_captions(probs: np.ndarray, labels: np.ndarray, index: np.ndarray, names: tuple[str, ...]) -> list[str]:
    pred = probs[index].argmax(axis=1)
    return [f"{names[t]} →\n{names[p]} ({probs[i, p]:.0%})" for i, t, p in zip(index, labels[index], pred, strict=True)]


def save_metrics(metrics: dict, path) -> None:
    write_atomic(path, json.dumps(metrics, indent=2) + "\n")


# --------------------------------------------------------------------------- uncertainty and calibration


def bootstrap_interval(correct: np.ndarray, level: float = 0.95, resamples: int = 1000, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of ``correct`` (0/1 per test image)."""
    rng = np.random.default_rng(seed)
    means = correct[rng.integers(0, len(correct), size=(resamples, len(correct)))].mean(axis=1)
    tail = (1 - level) / 2
    return [float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))]


def calibration_bins(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin (equal width on [0, 1]): mean confidence, accuracy and image count."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        return {
            "confidence": np.bincount(index, confidence, bins) / count,
            "accuracy": np.bincount(index, correct, bins) / count,
            "count": count,
        }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Sum over bins of (share of images) x |accuracy - mean confidence|."""
    b = calibration_bins(probs, labels, bins)
    used = b["count"] > 0
    gaps = np.abs(b["accuracy"][used] - b["confidence"][used])
    return float(np.sum(b["count"][used] / len(labels) * gaps))


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logits divided by ``temperature`` (>1 softens, <1 sharpens)."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 20] that minimises validation NLL (golden-section search on log T)."""
    golden = (np.sqrt(5) - 1) / 2
    low, high = np.log(0.05), np.log(20.0)
    for _ in range(60):
        a, b = high - golden * (high - low), low + golden * (high - low)
        if negative_log_likelihood(with_temperature(probs, np.exp(a)), labels) < negative_log_likelihood(
            with_temperature(probs, np.exp(b)), labels
        ):
            high = b
        else:
            low = a
    return float(np.exp((low + high) / 2))


# --------------------------------------------------------------------------- where the model fails


def confused_pairs(matrix: np.ndarray, names: tuple[str, ...], k: int = 10) -> list[dict]:
    """The ``k`` most-confused pairs of classes, largest off-diagonal cell first: true class, predicted
    class, count, and the count of the reverse direction (each pair listed once)."""
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    pairs, seen = [], set()
    for flat in np.argsort(-off, axis=None, kind="stable"):
        true, pred = np.unravel_index(flat, off.shape)
        if len(pairs) == k or off[true, pred] == 0:
            break
        if (pred, true) in seen:
            continue
        seen.add((true, pred))
        pairs.append(
            {
                "true": names[true],
                "predicted": names[pred],
                "count": int(off[true, pred]),
                "reverse": int(off[pred, true]),
            }
        )
    return pairs


def confused_pairs_table(pairs: list[dict], ds: Cifar100) -> str:
    """The most-confused pairs as a text table: true class, predicted class, test images confused that way and the
    other way, and the superclass the two share ("-" where the mistake crosses superclasses)."""
    if not pairs:
        return "No test image was given another class's label."
    index = {name: i for i, name in enumerate(ds.fine_names)}
    rows = [("true class", "predicted as", "images", "the other way", "same superclass")]
    for pair in pairs:
        true, guess = (ds.fine_to_coarse[index[pair[key]]] for key in ("true", "predicted"))
        shared = ds.coarse_names[true] if true == guess else "-"
        rows.append((pair["true"], pair["predicted"], str(pair["count"]), str(pair["reverse"]), shared))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    aligned = ([c.rjust(w) if i in (2, 3) else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
               for r in rows)  # fmt: skip
    return "\n".join("  ".join(cells).rstrip() for cells in aligned)


def right_and_wrong(pred: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first ``k`` images predicted right, then of the first ``k`` predicted wrong (fewer where
    there are fewer)."""
    return np.concatenate([np.flatnonzero(pred == labels)[:k], np.flatnonzero(pred != labels)[:k]])


def verdicts(probs: np.ndarray, labels: np.ndarray, index: np.ndarray, ds: Cifar100) -> list[str]:
    """For each test image in ``index``: its true class and "right", or "wrong (true class ranked k)" and, for a
    mistake that stays inside the true class's superclass, why it is a near miss."""
    ranks, pred = true_class_ranks(probs[index], labels[index]), probs[index].argmax(axis=1)
    found = []
    for i, true, guess, rank in zip(index, labels[index], pred, ranks, strict=True):
        verdict = "right" if rank == 1 else f"wrong (true class ranked {rank})"
        coarse = ds.fine_to_coarse[true]
        if rank > 1 and ds.fine_to_coarse[guess] == coarse:
            verdict += (f"; a near miss: {ds.fine_names[guess]} and {ds.fine_names[true]} are both in the superclass "
                        f"{ds.coarse_names[coarse]}")  # fmt: skip
        found.append(f"test image {i} (true: {ds.fine_names[true]}): {verdict}")
    return found


def pair_examples(
    labels: np.ndarray, pred: np.ndarray, names: tuple[str, ...], pairs: list[dict], per_direction: int = 3
):
    """Test images of each confused pair in both directions, with "true → predicted" captions."""
    index = {name: i for i, name in enumerate(names)}
    chosen, captions = [], []
    for pair in pairs:
        a, b = index[pair["true"]], index[pair["predicted"]]
        for true, guess in ((a, b), (b, a)):
            hits = np.flatnonzero((labels == true) & (pred == guess))[:per_direction]
            chosen += hits.tolist()
            captions += [f"{names[true]} →\n{names[guess]}"] * len(hits)
    return np.array(chosen, dtype=int), captions


def class_examples(labels: np.ndarray, ranked: list[list], names: tuple[str, ...], per_class: int = 4):
    """The first test images of each listed [name, accuracy] class, captioned with its accuracy."""
    index = {name: i for i, name in enumerate(names)}
    chosen, captions = [], []
    for name, accuracy in ranked:
        hits = np.flatnonzero(labels == index[name])[:per_class]
        chosen += hits.tolist()
        captions += [f"{name}\n({accuracy:.0%})"] * len(hits)
    return np.array(chosen, dtype=int), captions
