"""Notebook 01 says the splits' sizes and the class balance in a sentence each, computed from the labels: "Every
class has ..." only where it is true, else the uneven splits and their fewest classes."""

from cifar100_helpers import data

from .test_evaluation import tiny_dataset

EVERY_CLASS = [0, 1, 2, 3]


def test_split_sizes_in_one_sentence():
    ds = tiny_dataset(EVERY_CLASS * 2, train_fine=EVERY_CLASS * 500, val_fine=EVERY_CLASS)
    assert data.split_sizes(ds) == (
        "2,000 training, 4 validation and 8 test images of 2x2 pixels (3 channels, uint8), in 4 classes grouped into "
        "2 superclasses."
    )
    assert data.split_sizes(tiny_dataset(EVERY_CLASS)).startswith("4 training and 4 test images")  # no validation


def test_a_balanced_dataset_is_said_to_be_in_one_sentence():
    ds = tiny_dataset(EVERY_CLASS * 100, train_fine=EVERY_CLASS * 500)
    assert data.class_balance(ds) == "Every class has 500 training and 100 test images."


def test_uneven_classes_are_named_not_called_balanced():
    ds = tiny_dataset(EVERY_CLASS * 5 + [3], train_fine=EVERY_CLASS * 500)
    assert data.class_balance(ds) == ("The classes are uneven: test 5 to 6 images per class (fewest: cat, dog, oak). "
                                       "Every class has 500 training images.")  # fmt: skip
    ds = tiny_dataset([0, 0], train_fine=EVERY_CLASS * 2 + [0])
    assert data.class_balance(ds) == (
        "The classes are uneven: training 2 to 3 images per class (fewest: dog, oak, pine); "
        "test 0 to 2 images per class (fewest: dog, oak, pine)."
    )
