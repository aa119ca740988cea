import gzip
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from cifar100_helpers import config, data, generated_data, input_pipeline
from cifar100_helpers.errors import DataError

from .conftest import read_members, write_members


def test_reads_generated_archive_with_both_label_sets(archive):
    ds = data.load(archive, verify=False, val_fraction=0)
    assert ds.train.x.shape == (2000, 32, 32, 3) and ds.train.x.dtype == np.uint8
    assert ds.test.x.shape == (500, 32, 32, 3)
    assert len(ds.val) == 0
    assert ds.fine_names[:2] == ("apple", "aquarium_fish") and len(ds.fine_names) == 100
    assert ds.coarse_names[-1] == "vehicles_2" and len(ds.coarse_names) == 20
    assert np.bincount(ds.train.fine).tolist() == [20] * 100
    assert ds.fine_to_coarse.tolist() == list(generated_data.FINE_TO_COARSE)
    assert (ds.train.coarse == ds.fine_to_coarse[ds.train.fine]).all()


def test_real_test_images_keep_pixels_and_order(first20, tmp_path):
    """The first 20 real test images, written in the on-disk plane layout, come back pixel for pixel."""
    x, y = first20
    members = {
        "meta": {"fine_label_names": generated_data.FINE_NAMES, "coarse_label_names": generated_data.COARSE_NAMES}
    }
    for split in ("train", "test"):
        members[split] = {
            "data": x.transpose(0, 3, 1, 2).reshape(20, 3072),
            "fine_labels": y.tolist(),
            "coarse_labels": [generated_data.FINE_TO_COARSE[f] for f in y],
        }
    path = write_members(tmp_path / "real20.tar.gz", {k: pickle.dumps(v, protocol=2) for k, v in members.items()})
    ds = data.load(path, verify=False, val_fraction=0)
    assert np.array_equal(ds.test.x, x) and np.array_equal(ds.test.fine, y)
    assert ds.test.x[0, 0, :3, 0].tolist() == [199, 196, 195]  # the published first red values


def test_extracted_folder_works_both_ways(archive, tmp_path):
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    outer = data.load(tmp_path, verify=True, val_fraction=0)  # folders are not checksummed
    inner = data.load(tmp_path / "cifar-100-python", val_fraction=0)
    assert np.array_equal(outer.train.x, inner.train.x)


def test_checksum_on_by_default_and_off_on_request(archive):
    with pytest.raises(DataError, match="--no-verify"):
        data.load(archive)
    assert len(data.load(archive, verify=False).test) == 500


def test_search_order_env_then_keras_cache(archive, isolated_env, monkeypatch):
    cache = isolated_env / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    shutil.copy(archive, cache / data.KERAS_ARCHIVE_NAME)
    assert data.locate() == cache / data.KERAS_ARCHIVE_NAME
    monkeypatch.setenv("CIFAR100_DATA", str(archive))
    assert data.locate() == archive
    assert data.locate(cache / data.KERAS_ARCHIVE_NAME) == cache / data.KERAS_ARCHIVE_NAME


def test_older_keras_cache_name(archive, isolated_env):
    cache = isolated_env / "keras-home" / "datasets"
    cache.mkdir(parents=True)
    shutil.copy(archive, cache / "cifar-100-python.tar.gz")
    assert data.locate() == cache / "cifar-100-python.tar.gz"


def test_no_data_and_no_network_gives_one_clear_message(offline):
    with pytest.raises(DataError) as err:
        data.load()
    message = str(err.value)
    assert "--data" in message and "make demo" in message and "CIFAR100_DATA" in message
    assert err.value.__cause__ is None


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        data.load(tmp_path / "nope.tar.gz", verify=False)


def test_truncated_archive(archive, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.load(cut, verify=False)


def test_corrupt_gzip(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(gzip.compress(b"this is not a tar file" * 100)[:-30] + b"garbage")
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.load(bad, verify=False)


def test_member_missing(archive, tmp_path):
    members = read_members(archive)
    path = write_members(tmp_path / "x.tar.gz", {k: pickle.dumps(members[k]) for k in ("train", "meta")})
    with pytest.raises(DataError, match="lacks cifar-100-python/test"):
        data.load(path, verify=False)


@pytest.mark.parametrize(
    ("member", "edit", "message"),
    [
        ("train", lambda d: d.pop("fine_labels"), "key 'fine_labels' missing"),
        ("train", lambda d: d.update(data=d["data"][:, :100]), r"shape \(N, 3072\)"),
        ("test", lambda d: d.update(data=d["data"].astype(np.float32)), "must be a uint8 array"),
        ("test", lambda d: d.update(fine_labels=[100] * len(d["fine_labels"])), "outside 0..99"),
        ("test", lambda d: d.update(coarse_labels=d["coarse_labels"][:-1]), "'coarse_labels' must be"),
        ("meta", lambda d: d.update(fine_label_names=["a"]), "must list 100 names"),
    ],
)
def test_malformed_members(rewrite, member, edit, message):
    with pytest.raises(DataError, match=message):
        data.load(rewrite(member, edit), verify=False)


class Exploit:
    def __reduce__(self):
        import os

        return os.system, ("touch exploited",)


def test_pickle_that_runs_code_is_refused(archive, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    members = read_members(archive)
    raw = {k: pickle.dumps(v, protocol=2) for k, v in members.items()}
    raw["meta"] = pickle.dumps({"fine_label_names": Exploit()}, protocol=2)
    path = write_members(tmp_path / "evil.tar.gz", raw)
    with pytest.raises(DataError, match="Refused to unpickle"):
        data.load(path, verify=False)
    assert not (tmp_path / "exploited").exists()


def test_stratified_holdout_is_proportional_and_seeded():
    labels = np.repeat(np.arange(100), 500)
    index = data.stratified_holdout(labels, 5000, seed=3)
    assert len(index) == 5000 and len(set(index)) == 5000
    assert np.bincount(labels[index]).tolist() == [50] * 100
    assert np.array_equal(index, data.stratified_holdout(labels, 5000, seed=3))
    assert not np.array_equal(index, data.stratified_holdout(labels, 5000, seed=4))
    assert len(data.stratified_holdout(labels, 0, seed=0)) == 0


def test_validation_split_is_disjoint_from_training(archive):
    full = data.load(archive, verify=False, val_fraction=0)
    ds = data.load(archive, verify=False, val_fraction=0.1)
    assert len(ds.train) + len(ds.val) == len(full.train) and len(ds.val) == 200
    rows = {r.tobytes() for r in ds.train.x}
    assert not any(r.tobytes() in rows for r in ds.val.x)


def test_crop_flip_moves_pixels_without_inventing_them():
    images = np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3)
    out = input_pipeline.random_crop_flip(tf.constant(images), 0, True, tf.constant([0, 0], tf.int64)).numpy()
    for original, seen in zip(images, out, strict=True):
        assert np.array_equal(seen, original) or np.array_equal(seen, original[:, ::-1])
    shifted = input_pipeline.random_crop_flip(tf.constant(images), 2, False, tf.constant([1, 2], tf.int64)).numpy()
    assert shifted.shape == images.shape
    padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    for p, s in zip(padded, shifted, strict=True):
        assert any(np.array_equal(p[i : i + 8, j : j + 8], s) for i in range(5) for j in range(5))


def test_train_dataset_batches_one_hot_and_reproducible(archive):
    ds = data.load(archive, verify=False)
    cfg = config.make_config("cpu", seed=5)
    first = [x.numpy() for x, _ in input_pipeline.train_dataset(ds.train, 64, cfg).take(2)]
    again = [x.numpy() for x, _ in input_pipeline.train_dataset(ds.train, 64, cfg).take(2)]
    x, y = next(iter(input_pipeline.train_dataset(ds.train, 64, cfg)))
    assert x.shape == (64, 32, 32, 3) and x.dtype == tf.uint8
    assert y.shape == (64, 100) and np.allclose(y.numpy().sum(axis=1), 1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_stronger_policies_mix_labels_and_progressive_size_resizes(archive):
    ds = data.load(archive, verify=False)
    cfg = config.make_config("transfer", randaugment=0.5, mixup=0.2, cutmix=1.0, weights=None)
    x, y = next(iter(input_pipeline.train_dataset(ds.train, 32, cfg)))
    assert x.shape == (32, 32, 32, 3) and y.shape == (32, 100)
    assert np.allclose(y.numpy().sum(axis=1), 1, atol=1e-5) and (y.numpy().max(axis=1) < 1).any()  # mixed labels
    size = tf.Variable(24)
    x, _ = next(iter(input_pipeline.train_dataset(ds.train, 8, config.make_config("scratch"), size)))
    assert x.shape == (8, 24, 24, 3)


def test_random_resized_crop_zooms_in_within_the_pixel_range():
    images = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3)).astype(np.uint8)
    out = input_pipeline.random_resized_crop(tf.constant(images), 0.35, tf.constant([3, 4], tf.int64)).numpy()
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, images)
    again = input_pipeline.random_resized_crop(tf.constant(images), 0.35, tf.constant([3, 4], tf.int64)).numpy()
    assert np.array_equal(out, again)  # stateless: the same seed gives the same crops


def test_augmentation_preview_uses_the_recipes_own_augmentation(archive_images, monkeypatch):
    from cifar100_helpers import plots

    calls = []
    real = input_pipeline.batch_augmenter
    monkeypatch.setattr(plots, "batch_augmenter", lambda cfg: calls.append(cfg) or real(cfg))
    cfg = config.make_config("transfer", weights=None)
    figure = plots.augmentation_preview(archive_images[:2], cfg, views=2)
    assert calls == [cfg] and len(figure.axes) == 6
