"""Fashion-MNIST from the Debian package: shapes, counts, splits, errors."""

from collections import Counter

import numpy as np
import pytest

from edgevit.data import compute_normalization, load_dataset, load_fashion_mnist
from edgevit.data.fashion_mnist import CLASSES, DEFAULT_ROOT, ENV_VAR, FILES
from edgevit.data.idx import write_idx
from edgevit.errors import DataError

pytestmark = pytest.mark.skipif(
    not (DEFAULT_ROOT / "train-images-idx3-ubyte.gz").exists(),
    reason="Fashion-MNIST missing: apt-get install dataset-fashion-mnist",
)


@pytest.fixture(scope="module")
def fmnist():
    return load_fashion_mnist(DEFAULT_ROOT)


def test_shapes_and_counts(fmnist):
    assert fmnist.sizes() == {"train": 55000, "val": 5000, "test": 10000}
    for split in ("train", "val", "test"):
        ds = fmnist.get(split)
        assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int64
        assert ds.image_shape == (1, 28, 28)
        assert ds.images.shape == (len(ds), 1, 28, 28)
        assert ds.classes == CLASSES and len(CLASSES) == 10
        assert set(np.unique(ds.labels)) == set(range(10))
    assert fmnist.name == "fashion-mnist"


def test_split_is_deterministic_and_disjoint():
    a = load_fashion_mnist(DEFAULT_ROOT, val_size=5000, seed=0)
    b = load_fashion_mnist(DEFAULT_ROOT, val_size=5000, seed=0)
    c = load_fashion_mnist(DEFAULT_ROOT, val_size=5000, seed=1)
    np.testing.assert_array_equal(a.val.images, b.val.images)
    np.testing.assert_array_equal(a.train.labels, b.train.labels)
    assert not np.array_equal(a.val.images, c.val.images)
    # train and val together are the 60k official training images, each exactly once
    full = load_fashion_mnist(DEFAULT_ROOT, val_size=0)
    assert len(full.train) == 60000 and len(full.val) == 0
    assert _multiset(a.train) + _multiset(a.val) == _multiset(full.train)


def _multiset(ds):
    return Counter(bytes(img) + bytes([lab]) for img, lab in zip(ds.images.reshape(len(ds), -1), ds.labels))


def test_cache_is_not_mutable_through_results():
    a = load_fashion_mnist(DEFAULT_ROOT)
    a.test.images[:] = 0
    a.train.images[:] = 0
    b = load_fashion_mnist(DEFAULT_ROOT)
    assert b.test.images.any() and b.train.images.any()


def test_normalization_statistics(fmnist):
    norm = compute_normalization(fmnist.train)
    assert norm.mean[0] == pytest.approx(0.286, abs=2e-3)
    assert norm.std[0] == pytest.approx(0.353, abs=2e-3)


def test_load_dataset_names(fmnist):
    for name in ("fashion-mnist", "fmnist", "Fashion-MNIST"):
        splits = load_dataset(name, root=DEFAULT_ROOT)
        assert splits.sizes() == fmnist.sizes()
    assert len(load_dataset("fmnist", val_size=1000).val) == 1000


def test_missing_root_explains_how_to_install(tmp_path):
    with pytest.raises(DataError) as info:
        load_fashion_mnist(tmp_path / "nowhere")
    msg = str(info.value)
    assert "dataset-fashion-mnist" in msg and "train-images-idx3-ubyte" in msg and ENV_VAR in msg


def test_env_var_and_uncompressed_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for role, stem in FILES.items():
        n = 30 if role.startswith("train") else 10
        arr = rng.integers(0, 256, (n, 28, 28)) if role.endswith("images") else np.arange(n) % 10
        write_idx(tmp_path / stem, arr.astype(np.uint8))  # uncompressed
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    splits = load_fashion_mnist(val_size=5)
    assert splits.sizes() == {"train": 25, "val": 5, "test": 10}


def test_bad_label_file_is_named(tmp_path):
    for role, stem in FILES.items():
        n = 12 if role.startswith("train") else 4
        arr = np.zeros((n, 28, 28)) if role.endswith("images") else np.zeros(n + 1)
        write_idx(tmp_path / f"{stem}.gz", arr.astype(np.uint8))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_fashion_mnist(tmp_path, val_size=2)


def test_val_size_too_large(fmnist):
    with pytest.raises(DataError, match="val_size"):
        load_fashion_mnist(DEFAULT_ROOT, val_size=60000)
