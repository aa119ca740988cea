import numpy as np
import pytest

from cifar100_helpers import config, data, evaluation

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


def test_tta_views():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    assert len(list(evaluation.tta_views(images, "none"))) == 1
    flip = list(evaluation.tta_views(images, "flip"))
    assert len(flip) == 2 and np.array_equal(flip[1], images[:, :, ::-1])
    views = list(evaluation.tta_views(images, "flip_translate"))
    assert len(views) == 6
    assert np.array_equal(views[4][:, 1:, 1:], images[:, :-1, :-1])  # shifted down-right by one pixel
    assert np.array_equal(views[5][:, 1:, 1:], images[:, :-1, :0:-1])  # the mirror, shifted down-right
    grid = list(evaluation.tta_views(images, "flip_grid"))
    assert len(grid) == 18
    expected = [evaluation.translated(v, dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2) for v in flip]
    assert all(np.array_equal(a, b) for a, b in zip(grid, expected, strict=True))


def test_every_tta_mode_has_views():
    assert set(evaluation.TTA_VIEWS) == set(config.TTA_MODES)


def test_translated_fills_by_reflection():
    images = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1)
    assert evaluation.translated(images, 1, 0)[0, :, :, 0].tolist() == [[3, 4, 5], [0, 1, 2], [3, 4, 5]]


class PixelModel:
    """A stand-in model whose 'probabilities' are each image's pixels, so averages can be checked by hand."""

    def predict(self, images, batch_size, verbose):
        return images.reshape(len(images), -1).astype(np.float64)


def test_predict_averages_every_view():
    images = np.random.default_rng(0).integers(0, 255, (3, 6, 6, 1), dtype=np.uint8)
    for mode in config.TTA_MODES:
        views = list(evaluation.tta_views(images, mode))
        expected = np.mean([v.reshape(3, -1) for v in views], axis=0)
        np.testing.assert_allclose(evaluation.predict(PixelModel(), images, tta=mode), expected)


def tiny_dataset(test_fine, train_fine=(0, 1, 2, 3), val_fine=()) -> data.Cifar100:
    """Four classes in two superclasses (cat, dog: pets; oak, pine: trees), blank 2x2 images of the labels given."""
    coarse = np.array([0, 0, 1, 1])
    image = np.zeros((1, 2, 2, 3), dtype=np.uint8)

    def split(fine):
        fine = np.asarray(fine, dtype=np.int64)
        return data.Split(np.repeat(image, len(fine), axis=0), fine, coarse[fine])

    return data.Cifar100(split(train_fine), split(val_fine), split(test_fine), ("cat", "dog", "oak", "pine"),
                         ("pets", "trees"), "tiny")  # fmt: skip


ANSWERS = np.array(
    [
        [0.7, 0.1, 0.1, 0.1],  # a cat, right
        [0.5, 0.3, 0.1, 0.1],  # a dog taken for a cat: true class second, inside the superclass
        [0.1, 0.1, 0.2, 0.6],  # an oak taken for a pine: second, inside
        [0.4, 0.3, 0.2, 0.1],  # a pine taken for a cat: last, across superclasses
        [0.1, 0.1, 0.1, 0.7],  # a pine, right
    ]
)
TRUE = np.array([0, 1, 2, 3, 3])


def test_true_class_ranks_agree_with_top_k():
    assert evaluation.true_class_ranks(ANSWERS, TRUE).tolist() == [1, 2, 2, 4, 1]
    assert evaluation.true_class_ranks(np.array([[0.5, 0.5]]), np.array([1])).tolist() == [2]  # ties: class order
    assert evaluation.top_k_correct(ANSWERS, TRUE, 2).tolist() == [1, 1, 1, 0, 1]


def test_right_and_wrong_takes_the_first_of_each():
    pred = ANSWERS.argmax(axis=1)
    assert evaluation.right_and_wrong(pred, TRUE, 1).tolist() == [0, 1]
    assert evaluation.right_and_wrong(pred, TRUE, 3).tolist() == [0, 4, 1, 2, 3]


def test_verdicts_say_right_or_wrong_and_why_a_near_miss_is_one():
    ds = tiny_dataset(TRUE)
    assert evaluation.verdicts(ANSWERS, TRUE, np.array([0, 1, 3]), ds) == [
        "test image 0 (true: cat): right",
        "test image 1 (true: dog): wrong (true class ranked 2); a near miss: cat and dog are both in the superclass "
        "pets",
        "test image 3 (true: pine): wrong (true class ranked 4)",  # across superclasses: no excuse offered
    ]


def test_confused_pairs_table_names_the_shared_superclass():
    ds = tiny_dataset(TRUE)
    pairs = [{"true": "dog", "predicted": "cat", "count": 12, "reverse": 3},
             {"true": "pine", "predicted": "cat", "count": 2, "reverse": 0}]  # fmt: skip
    assert evaluation.confused_pairs_table(pairs, ds).splitlines() == [
        "true class  predicted as  images  the other way  same superclass",
        "dog         cat               12              3  pets",
        "pine        cat                2              0  -",
    ]
    assert evaluation.confused_pairs_table([], ds) == "No test image was given another class's label."


def test_summarize_records_the_parameter_count():
    ds = tiny_dataset(TRUE)
    metrics = evaluation.summarize(ANSWERS, None, ds, config.make_config("smoke"), parameters=12_700)
    assert metrics["parameters"] == 12_700 and metrics["top1"] == pytest.approx(0.4)
