"""A dataset in the CIFAR-100 format whose test split lacks some classes (a subset, one's own data)
still gets its complete report, and the report says which classes had no test images."""

import json

import numpy as np
import pytest

from cifar100_helpers import config, evaluation
from cifar100_helpers.running import notebook_runner


def drop_test_classes(test: dict) -> None:
    labels = np.asarray(test["fine_labels"])
    keep = labels >= 10  # classes 0-9 (apple ... bowl in the real names) have no test images
    for key, value in list(test.items()):
        if key in ("data", "fine_labels", "coarse_labels", "filenames"):
            test[key] = value[keep] if isinstance(value, np.ndarray) else np.asarray(value)[keep].tolist()


def test_per_class_accuracy_of_an_absent_class_is_unknown_not_zero():
    accuracy = evaluation.per_class_accuracy(np.array([0, 0, 2]), np.array([0, 1, 2]), 3)
    assert accuracy[0] == 0.5 and np.isnan(accuracy[1]) and accuracy[2] == 1.0
    ranked = evaluation.ranked_classes(accuracy, ("a", "b", "c"), k=3)
    assert ranked == {"best": [["c", 1.0], ["a", 0.5]], "worst": [["a", 0.5], ["c", 1.0]]}


@pytest.mark.slow  # make test-slow: heavy
def test_report_completes_when_the_test_split_lacks_classes(rewrite, tmp_path):
    data = rewrite("test", drop_test_classes)
    cfg = config.make_config("cpu", epochs=1, widths=(8, 16, 16), batch_size=64, data=str(data), verify=False)
    run = notebook_runner.run(cfg, tmp_path / "subset")
    metrics = json.loads(run.metrics.read_text())
    assert len(metrics["classes_without_test_images"]) == 10
    assert metrics["class_accuracy"][metrics["classes_without_test_images"][0]] is None
    assert all(name not in metrics["classes_without_test_images"] for name, _ in metrics["classes"]["worst"])
    assert run.report.exists() and run.figure("worst_class_examples").exists()
