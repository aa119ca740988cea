import numpy as np
import pytest

from cifar100_helpers import evaluation

PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # true 0: top-1 right
        [0.5, 0.3, 0.2],  # true 1: top-1 wrong, top-2 right
        [0.1, 0.6, 0.3],  # true 2: wrong, top-2 right
        [0.2, 0.1, 0.7],  # true 2: right
    ]
)
LABELS = np.array([0, 1, 2, 2])


def test_top_k():
    assert evaluation.top_k_accuracy(PROBS, LABELS, 1) == pytest.approx(0.5)
    assert evaluation.top_k_accuracy(PROBS, LABELS, 2) == pytest.approx(1.0)


def test_confusion_and_per_class():
    pred = PROBS.argmax(axis=1)
    matrix = evaluation.confusion(LABELS, pred, 3)
    assert matrix.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert evaluation.per_class_accuracy(LABELS, pred, 3).tolist() == [1.0, 0.0, 0.5]


def test_ranked_classes():
    ranked = evaluation.ranked_classes(np.array([1.0, 0.0, 0.5]), ("a", "b", "c"), k=2)
    assert ranked == {"best": [["a", 1.0], ["c", 0.5]], "worst": [["b", 0.0], ["c", 0.5]]}


def test_confident_mistakes_sorted_by_confidence():
    assert evaluation.confident_mistakes(PROBS, LABELS).tolist() == [2, 1]


def test_mistake_captions():
    captions = evaluation.mistake_captions(PROBS, LABELS, np.array([2]), ("cat", "dog", "fox"))
    assert captions == ["fox →\ndog (60%)"]
