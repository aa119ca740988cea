"""The model's answer for images in words: the top classes with their probabilities, and the top class's superclass
(notebook 04's examples and the ``predict`` command). Class names are CIFAR-100's fixed tables (:mod:`generated_data`,
checked against the real archive by a test), so a saved model is all this needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generated_data import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

FINE_TO_COARSE_ARRAY = np.asarray(FINE_TO_COARSE)


@dataclass(frozen=True)
class Prediction:
    """The ``top`` fine classes of one image with their probabilities, and the top class's superclass with
    the summed probability of that superclass's five classes."""

    label: str
    top: list[tuple[str, float]]
    superclass: str
    superclass_probability: float

    def text(self) -> str:
        width = max(len(name) for name, _ in self.top)
        lines = [self.label] + [f"  {i}. {name:<{width}s} {p:7.2%}" for i, (name, p) in enumerate(self.top, 1)]
        lines.append(f"  superclass: {self.superclass} ({self.superclass_probability:.2%} over its 5 classes)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "file": self.label,
            "top": [{"class": name, "probability": round(p, 6)} for name, p in self.top],
            "superclass": self.superclass,
            "superclass_probability": round(self.superclass_probability, 6),
        }


def ranked(probs: np.ndarray, labels: list[str], top: int = 5) -> list[Prediction]:
    """One Prediction per row of class probabilities."""
    results = []
    for label, row in zip(labels, np.asarray(probs, dtype=np.float64), strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        coarse = FINE_TO_COARSE_ARRAY[order[0]]
        results.append(
            Prediction(
                label=label,
                top=[(FINE_NAMES[i], float(row[i])) for i in order],
                superclass=COARSE_NAMES[coarse],
                superclass_probability=float(row[np.equal(FINE_TO_COARSE_ARRAY, coarse)].sum()),
            )
        )
    return results


def classify(model, images: np.ndarray, tta: str, labels: list[str] | None = None, top: int = 5) -> list[Prediction]:
    """Predictions for uint8 images (N x 32 x 32 x 3) with ``tta`` views averaged, as in the report."""
    from . import evaluation  # TensorFlow: only once there is a model

    labels = labels or [f"image {i}" for i in range(len(images))]
    return ranked(evaluation.predict(model, np.asarray(images), tta=tta), labels, top)
