"""Datasets in .npz files: the three image layouts, dtypes and error messages."""

import numpy as np
import pytest

from edgevit.data import load_dataset, load_npz
from edgevit.data.npz import to_nchw_uint8
from edgevit.errors import DataError

RNG = np.random.default_rng(0)
NCHW = RNG.integers(0, 256, (20, 3, 5, 4), dtype=np.uint8)


def save(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_layouts():
    gray = NCHW[:, 0]
    np.testing.assert_array_equal(to_nchw_uint8(gray), gray[:, None])
    np.testing.assert_array_equal(to_nchw_uint8(NCHW.transpose(0, 2, 3, 1)), NCHW)
    np.testing.assert_array_equal(to_nchw_uint8(NCHW), NCHW)
    np.testing.assert_array_equal(to_nchw_uint8(NCHW[:, :1].transpose(0, 2, 3, 1)), NCHW[:, :1])
    out = to_nchw_uint8(NCHW.transpose(0, 2, 3, 1))
    assert out.flags.c_contiguous and out.dtype == np.uint8


def test_dtypes():
    np.testing.assert_array_equal(to_nchw_uint8(NCHW.astype(np.float32) / 255), NCHW)
    np.testing.assert_array_equal(to_nchw_uint8(NCHW.astype(np.int64)), NCHW)
    with pytest.raises(DataError, match=r"x_train: float images must be finite and in \[0, 1\]"):
        to_nchw_uint8(NCHW.astype(np.float32), "x_train")
    with pytest.raises(DataError, match="0..255"):
        to_nchw_uint8(NCHW.astype(np.int32) * 2)
    with pytest.raises(DataError, match="dtype bool"):
        to_nchw_uint8(NCHW > 3)


@pytest.mark.parametrize("shape", [(20, 5), (20, 5, 4, 6), (20, 1, 2, 3, 4)])
def test_bad_shapes_name_the_key(shape):
    with pytest.raises(DataError, match=r"x_test has shape"):
        to_nchw_uint8(np.zeros(shape, np.uint8), "x_test")


@pytest.mark.parametrize("layout", ["gray", "nhwc", "nchw"])
def test_load_npz(tmp_path, layout):
    x = {"gray": NCHW[:, 0], "nhwc": NCHW.transpose(0, 2, 3, 1), "nchw": NCHW}[layout]
    y = np.arange(20) % 4
    path = save(tmp_path, x_train=x, y_train=y, x_test=x[:6], y_test=y[:6])
    splits = load_npz(path, val_size=5, seed=0)
    assert splits.sizes() == {"train": 15, "val": 5, "test": 6}
    c = 1 if layout == "gray" else 3
    assert splits.train.image_shape == (c, 5, 4)
    assert splits.train.classes == ["0", "1", "2", "3"] and splits.name == "d"
    np.testing.assert_array_equal(splits.test.images, NCHW[:6, :c])


def test_explicit_val_and_classes(tmp_path):
    y = np.arange(20) % 2
    path = save(
        tmp_path, x_train=NCHW, y_train=y, x_val=NCHW[:3], y_val=y[:3].reshape(3, 1),
        x_test=NCHW[:4], y_test=y[:4], classes=np.array(["no", "yes", "maybe"]),
    )
    splits = load_npz(path)
    assert splits.sizes() == {"train": 20, "val": 3, "test": 4}
    assert splits.val.classes == ["no", "yes", "maybe"]


def _base(**changes):
    arrays = dict(x_train=NCHW, y_train=np.arange(20) % 3, x_test=NCHW[:4], y_test=np.arange(4) % 3)
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(y_test=None), "missing key.*y_test"),
        (dict(x_val=NCHW[:2]), "x_val and y_val"),
        (dict(y_train=np.arange(19) % 3), "y_train has 19 labels"),
        (dict(y_train=np.eye(20)[:, :3]), "y_train has shape.*one-hot"),
        (dict(y_train=np.full(20, 0.5)), "y_train: labels must be integers"),
        (dict(y_test=np.array([0, -1, 0, 0])), "y_test: labels must be >= 0"),
        (dict(x_test=NCHW[:4, :, :4]), "different image shapes"),
        (dict(classes=np.array(["a", "b"])), "classes has 2 names"),
        (dict(classes=np.array([1, 2, 3])), "string array"),
    ],
)
def test_errors(tmp_path, changes, message):
    path = save(tmp_path, **_base(**changes))
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_npz(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_npz(bad)
    obj = tmp_path / "obj.npz"
    np.savez(obj, **_base(classes=np.array(["a", None, "c"], dtype=object)))
    with pytest.raises(DataError, match="classes"):
        load_npz(obj)


def test_load_dataset_dispatch(tmp_path):
    path = save(tmp_path, **_base())
    assert load_dataset(str(path), val_size=4).sizes() == {"train": 16, "val": 4, "test": 4}
    assert load_dataset("d.npz", root=tmp_path).sizes() == {"train": 18, "val": 2, "test": 4}
    with pytest.raises(DataError, match="does not exist.*fashion-mnist.*image folder.*npz"):
        load_dataset("imagenet")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="neither a directory nor an .npz"):
        load_dataset(str(tmp_path / "file.txt"))
