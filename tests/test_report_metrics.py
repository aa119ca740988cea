"""Issue 5's metrics, checked against values computed by hand on small arrays."""

import numpy as np
import pytest

from cifar100_helpers import evaluation


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n():
    small = np.array([1, 0] * 50, dtype=float)  # mean 0.5, n = 100
    large = np.array([1, 0] * 5000, dtype=float)  # mean 0.5, n = 10,000
    lo, hi = evaluation.bootstrap_interval(small)
    assert lo < 0.5 < hi
    assert (hi - lo) == pytest.approx(2 * 1.96 * 0.05, abs=0.03)  # normal approximation: +-1.96 sqrt(pq/n)
    lo_l, hi_l = evaluation.bootstrap_interval(large)
    assert (hi_l - lo_l) == pytest.approx(2 * 1.96 * 0.005, abs=0.003)
    assert evaluation.bootstrap_interval(np.ones(20)) == [1.0, 1.0]


def test_expected_calibration_error_by_hand():
    # two images at confidence 0.9 (one right), two at 0.6 (both right)
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bins: 0.9 -> accuracy 0.5, gap 0.4, share 0.5; 0.6 -> accuracy 1.0, gap 0.4, share 0.5
    assert evaluation.expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.4)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert evaluation.expected_calibration_error(perfect, np.array([0, 1])) == pytest.approx(0.0)


def test_temperature_scaling_lowers_nll_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10))
    logits[np.arange(2000), labels] += 1.0  # some signal
    overconfident = evaluation.with_temperature(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.25)
    temperature = evaluation.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(4.0, rel=0.15)  # undoes the sharpening
    fixed = evaluation.with_temperature(overconfident, temperature)
    assert evaluation.negative_log_likelihood(fixed, labels) < evaluation.negative_log_likelihood(overconfident, labels)
    assert np.array_equal(fixed.argmax(1), overconfident.argmax(1))  # predictions unchanged


def test_confused_pairs():
    matrix = np.array([[5, 3, 0], [2, 6, 0], [0, 4, 2]])
    pairs = evaluation.confused_pairs(matrix, ("a", "b", "c"), k=3)
    assert pairs == [  # b -> a is a's pair with b seen from the other side: listed once
        {"true": "c", "predicted": "b", "count": 4, "reverse": 0},
        {"true": "a", "predicted": "b", "count": 3, "reverse": 2},
    ]


def test_pair_and_class_examples():
    labels = np.array([0, 1, 0, 1, 2])
    pred = np.array([1, 0, 1, 1, 2])
    shown, captions = evaluation.pair_examples(labels, pred, ("a", "b", "c"), [{"true": "a", "predicted": "b"}], 3)
    assert shown.tolist() == [0, 2, 1] and captions == ["a →\nb", "a →\nb", "b →\na"]
    shown, captions = evaluation.class_examples(labels, [["b", 0.5]], ("a", "b", "c"), per_class=4)
    assert shown.tolist() == [1, 3] and captions == ["b\n(50%)"] * 2
