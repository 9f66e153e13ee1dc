"""Image folders of PNGs generated with Pillow: both layouts and error cases."""

import numpy as np
import pytest
from PIL import Image

from edgevit.data import load_dataset, load_image_folder
from edgevit.errors import DataError


def write_images(folder, classes=("cat", "dog", "eel"), per_class=5, size=(8, 6), mode="L", ext="png", seed=0):
    """folder/<class>/<i>.<ext>, size (H, W); pixel [0, 0] encodes class and index."""
    rng = np.random.default_rng(seed)
    for ci, cls in enumerate(classes):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = size if mode == "L" else (*size, 3)
            arr = rng.integers(0, 256, shape, dtype=np.uint8)
            arr[0, 0] = ci * 50 + i
            Image.fromarray(arr, mode=mode).save(folder / cls / f"{i:03d}.{ext}")
    return folder


def test_flat_layout_grayscale(tmp_path):
    root = write_images(tmp_path / "shapes", per_class=10)
    splits = load_image_folder(root, val_size=3, test_size=6, seed=0)
    assert splits.sizes() == {"train": 21, "val": 3, "test": 6}
    assert splits.name == "shapes" and splits.train.classes == ["cat", "dog", "eel"]
    for split in ("train", "val", "test"):
        ds = splits.get(split)
        assert ds.images.dtype == np.uint8 and ds.image_shape == (1, 8, 6)
        assert ds.labels.dtype == np.int64
    ids = lambda ds: set(ds.images[:, 0, 0, 0].tolist())
    all_ids = ids(splits.train) | ids(splits.val) | ids(splits.test)
    assert len(all_ids) == 30  # disjoint and covering
    # the label matches the class folder the image came from
    np.testing.assert_array_equal(splits.train.images[:, 0, 0, 0] // 50, splits.train.labels)
    again = load_image_folder(root, val_size=3, test_size=6, seed=0)
    np.testing.assert_array_equal(again.test.images, splits.test.images)


def test_pixels_survive_png_round_trip(tmp_path):
    root = tmp_path / "one"
    (root / "a").mkdir(parents=True)
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(arr).save(root / "a" / "x.png")
    Image.fromarray(arr).save(root / "a" / "y.png")
    splits = load_image_folder(root, val_size=0, test_size=0)
    np.testing.assert_array_equal(splits.train.images[0, 0], arr)


def test_rgb_and_channels_option(tmp_path):
    root = write_images(tmp_path / "rgb", mode="RGB", ext="bmp", per_class=4)
    splits = load_image_folder(root, val_size=0.25, test_size=0.25)
    assert splits.train.image_shape == (3, 8, 6)
    gray = load_image_folder(root, val_size=0.25, test_size=0.25, channels=1)
    assert gray.train.image_shape == (1, 8, 6)
    with pytest.raises(DataError, match="channels"):
        load_image_folder(root, channels=2)


def test_train_test_layout(tmp_path):
    root = tmp_path / "ds"
    write_images(root / "train", per_class=6)
    write_images(root / "test", classes=("cat", "eel"), per_class=2, seed=1)
    splits = load_image_folder(root, val_size=3)
    assert splits.sizes() == {"train": 15, "val": 3, "test": 4}
    assert splits.test.classes == ["cat", "dog", "eel"]
    assert splits.test.labels.tolist() == [0, 0, 2, 2]
    write_images(root / "val", per_class=1, seed=2)
    splits = load_image_folder(root, val_size=3)
    assert splits.sizes() == {"train": 18, "val": 3, "test": 4}


def test_train_only_layout_carves_test(tmp_path):
    root = tmp_path / "ds"
    write_images(root / "train", per_class=10)
    splits = load_image_folder(root, val_size=5, test_size=5)
    assert splits.sizes() == {"train": 20, "val": 5, "test": 5}
    assert splits.train.classes == ["cat", "dog", "eel"]


def test_resize_with_image_size(tmp_path):
    root = write_images(tmp_path / "mixed", classes=("a",), per_class=2, size=(8, 6))
    write_images(tmp_path / "mixed", classes=("b",), per_class=2, size=(10, 10))
    with pytest.raises(DataError, match="share a size") as info:
        load_image_folder(root, val_size=0, test_size=0)
    assert "000.png" in str(info.value)
    splits = load_image_folder(root, val_size=0, test_size=0, image_size=(5, 7))
    assert splits.train.image_shape == (1, 5, 7)
    assert load_image_folder(root, val_size=0, test_size=0, image_size=4).train.image_shape == (1, 4, 4)


def test_error_cases(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class subfolders"):
        load_image_folder(tmp_path / "empty")
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(loose / "a.png")
    with pytest.raises(DataError, match="loose images"):
        load_image_folder(loose)
    root = write_images(tmp_path / "ds", per_class=3)
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra.*no images"):
        load_image_folder(root)
    (root / "zebra" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        load_image_folder(root)


def test_unknown_class_in_test_split(tmp_path):
    root = tmp_path / "ds"
    write_images(root / "train", classes=("a", "b"), per_class=3)
    write_images(root / "test", classes=("a", "c"), per_class=1)
    with pytest.raises(DataError, match="c"):
        load_image_folder(root)


def test_load_dataset_dispatches_directories(tmp_path):
    root = write_images(tmp_path / "folder", per_class=10)
    splits = load_dataset(str(root))
    assert splits.sizes() == {"train": 24, "val": 3, "test": 3}  # 10% each by default
    assert load_dataset("folder", root=tmp_path).sizes() == splits.sizes()
