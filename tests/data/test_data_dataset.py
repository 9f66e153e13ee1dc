"""ArrayDataset, DatasetSplits, splitting, calibration subsets and batching."""

import numpy as np
import pytest

from edgevit.data import (
    ArrayDataset,
    DatasetSplits,
    calibration_subset,
    iterate_batches,
    split_train_val,
)
from edgevit.data.dataset import resolve_count, split_indices
from edgevit.errors import DataError


def make_ds(n=100, classes=4, c=1, hw=(5, 6), name="toy/train", labels=None):
    images = (np.arange(n * c * hw[0] * hw[1]) % 251).astype(np.uint8).reshape(n, c, *hw)
    images[:, 0, 0, 0] = np.arange(n) % 256  # make images distinguishable
    images[:, 0, 0, 1] = np.arange(n) // 256
    labels = np.arange(n) % classes if labels is None else labels
    return ArrayDataset(images, labels, [f"c{i}" for i in range(classes)], name)


def test_basic_properties():
    ds = make_ds(n=10, classes=3, c=3, hw=(4, 7))
    assert len(ds) == 10 and ds.image_shape == (3, 4, 7) and ds.num_classes == 3
    assert ds.labels.dtype == np.int64
    assert ds.class_counts().tolist() == [4, 3, 3]
    assert "n=10" in repr(ds)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(images=np.zeros((2, 1, 3, 3), np.float32)), "uint8"),
        (dict(images=np.zeros((2, 3, 3), np.uint8)), r"\[N, C, H, W\]"),
        (dict(labels=np.array([0, 5])), r"labels must be in \[0, 2\)"),
        (dict(labels=np.array([0, -1])), "labels must be in"),
        (dict(labels=np.array([0, 1, 1])), "shape"),
        (dict(labels=np.array([0.0, 1.0])), "integers"),
        (dict(classes=[]), "at least one class"),
        (dict(classes=["a", "a"]), "unique"),
        (dict(images=[[1]]), "numpy array"),
    ],
)
def test_validation(kwargs, message):
    args = dict(images=np.zeros((2, 1, 3, 3), np.uint8), labels=np.array([0, 1]), classes=["a", "b"], name="t")
    args.update(kwargs)
    with pytest.raises(DataError, match=message):
        ArrayDataset(**args)


def test_labels_converted_to_int64():
    ds = ArrayDataset(np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 1], np.uint8), ["a", "b"])
    assert ds.labels.dtype == np.int64


def test_subset_and_take_copy():
    ds = make_ds(n=20)
    sub = ds.subset([3, 1, 3])
    np.testing.assert_array_equal(sub.images, ds.images[[3, 1, 3]])
    np.testing.assert_array_equal(sub.labels, ds.labels[[3, 1, 3]])
    sub.images[:] = 0
    assert ds.images[3].any()
    assert len(ds.subset(np.arange(20) < 5)) == 5
    assert len(ds.subset([])) == 0 and ds.subset([]).image_shape == ds.image_shape
    np.testing.assert_array_equal(ds.take(4).images, ds.images[:4])
    assert len(ds.take(1000)) == 20 and len(ds.take(0)) == 0
    with pytest.raises(DataError):
        ds.take(-1)
    with pytest.raises(DataError, match="out of range"):
        ds.subset([20])


def test_splits_get():
    ds = make_ds()
    splits = DatasetSplits("toy", ds, ds.take(3), ds.take(5))
    assert splits.get("val") is splits.val and splits.get("TEST") is splits.test
    with pytest.raises(DataError, match="train, val, test"):
        splits.get("validation")


def test_split_indices_deterministic_disjoint_covering():
    a_keep, a_held = split_indices(50, 10, seed=3)
    b_keep, b_held = split_indices(50, 10, seed=3)
    c_keep, c_held = split_indices(50, 10, seed=4)
    np.testing.assert_array_equal(a_held, b_held)
    assert not np.array_equal(a_held, c_held)
    assert len(a_held) == 10 and len(a_keep) == 40
    assert not set(a_keep) & set(a_held)
    assert sorted(set(a_keep) | set(a_held)) == list(range(50))


def test_split_train_val():
    ds = make_ds(n=100)
    train, val = split_train_val(ds, 20, seed=0)
    assert (len(train), len(val)) == (80, 20)
    assert val.name == "toy/val" and train.name == "toy/train"
    ids = lambda d: set(d.images[:, 0, 0, 0].tolist())
    assert not ids(train) & ids(val) and ids(train) | ids(val) == ids(ds)
    train2, val2 = split_train_val(ds, 20, seed=0)
    np.testing.assert_array_equal(val.images, val2.images)
    _, val3 = split_train_val(ds, 20, seed=1)
    assert ids(val3) != ids(val)
    assert len(split_train_val(ds, 0.25, seed=0)[1]) == 25
    for bad in (100, 1000, -1, 1.0, "10", True):
        with pytest.raises(DataError, match="val_size"):
            split_train_val(ds, bad, seed=0)


def test_resolve_count():
    assert resolve_count(0.1, 55, "x") == 6 and resolve_count(7, 55, "x") == 7


def test_calibration_subset_balanced_deterministic_capped():
    ds = make_ds(n=400, classes=10)
    cal = calibration_subset(ds, n=256, seed=0)
    assert len(cal) == 256
    counts = cal.class_counts()
    assert counts.max() - counts.min() <= 1
    assert cal.take(30).class_counts().tolist() == [3] * 10  # every prefix is balanced
    again = calibration_subset(ds, n=256, seed=0)
    np.testing.assert_array_equal(cal.images, again.images)
    other = calibration_subset(ds, n=256, seed=1)
    assert not np.array_equal(cal.images, other.images)
    assert len(calibration_subset(ds.take(50), n=256)) == 50
    ids = (cal.images[:, 0, 0, 0] + 256 * cal.images[:, 0, 0, 1].astype(int)).tolist()
    assert len(set(ids)) == len(ids)  # no image twice


def test_calibration_subset_imbalanced_classes():
    labels = np.array([0] * 90 + [1] * 5 + [2] * 5)
    ds = make_ds(n=100, classes=3, labels=labels)
    cal = calibration_subset(ds, n=30, seed=0)
    assert cal.class_counts().tolist() == [20, 5, 5]  # small classes fully used, rest from class 0
    with pytest.raises(DataError):
        calibration_subset(ds, n=0)
    with pytest.raises(DataError, match="empty"):
        calibration_subset(ds.take(0))


def test_iterate_batches():
    ds = make_ds(n=10)
    batches = list(iterate_batches(ds, 4, shuffle=False, seed=None))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == np.uint8 and x.shape == (4, 1, 5, 6) and y.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), ds.images)
    assert [len(b[1]) for b in iterate_batches(ds, 4, drop_last=True)] == [4, 4]
    s1 = np.concatenate([b[0] for b in iterate_batches(ds, 3, shuffle=True, seed=7)])
    s2 = np.concatenate([b[0] for b in iterate_batches(ds, 3, shuffle=True, seed=7)])
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, ds.images)
    assert sorted(s1[:, 0, 0, 0].tolist()) == sorted(ds.images[:, 0, 0, 0].tolist())
    with pytest.raises(DataError, match="batch_size"):
        next(iterate_batches(ds, 0))
