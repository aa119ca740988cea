"""Checks against the real CIFAR-100 (a pixel-exact, re-encoded copy in ../shared/data)."""

import numpy as np
import pytest

from cifar100_helpers import data

from .conftest import SHARED_DATA

REAL = SHARED_DATA / "cifar-100-python.tar.gz"
pytestmark = pytest.mark.skipif(not REAL.exists(), reason=f"real CIFAR-100 not present at {REAL} (fresh clone)")


@pytest.fixture(scope="module")
def real():
    return data.load(REAL, verify=False, val_fraction=0)


def test_sizes_and_label_sets(real):
    assert real.train.x.shape == (50000, 32, 32, 3) and real.test.x.shape == (10000, 32, 32, 3)
    assert np.bincount(real.train.fine).tolist() == [500] * 100
    assert np.bincount(real.test.fine).tolist() == [100] * 100
    assert np.bincount(real.train.coarse).tolist() == [2500] * 20
    assert np.bincount(real.test.coarse).tolist() == [500] * 20
    assert real.fine_names[0] == "apple" and real.fine_names[-1] == "worm"
    assert real.coarse_names[0] == "aquatic_mammals" and real.coarse_names[-1] == "vehicles_2"


def test_first_20_test_images_match_foolbox_fixture(real, first20):
    x, y = first20
    assert np.array_equal(real.test.x[:20], x)
    assert np.array_equal(real.test.fine[:20], y)


def test_train_channel_means(real):
    means = real.train.x.reshape(-1, 3).mean(axis=0) / 255
    assert np.round(means, 4).tolist() == [0.5071, 0.4865, 0.4409]


def test_reencoded_copy_fails_verification_with_the_fix():
    with pytest.raises(data.DataError, match="--no-verify"):
        data.load(REAL)
