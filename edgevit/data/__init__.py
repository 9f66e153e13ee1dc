"""Datasets for edgevit: Fashion-MNIST (Debian package), image folders and .npz files.

All loaders return `DatasetSplits` (train / val / test `ArrayDataset`s) with images
uint8 [N, C, H, W] and labels int64 [N]; `Normalization` turns images into the
float32 model input and is stored with every checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from edgevit.errors import DataError

from edgevit.data.dataset import (
    SPLIT_NAMES,
    ArrayDataset,
    DatasetSplits,
    calibration_subset,
    iterate_batches,
    split_train_val,
)
from edgevit.data.fashion_mnist import load_fashion_mnist
from edgevit.data.idx import read_idx, write_idx
from edgevit.data.imagefolder import load_image_folder
from edgevit.data.normalize import Normalization, compute_normalization
from edgevit.data.npz import load_npz
from edgevit.data.synthetic import is_synthetic, load_synthetic

__all__ = [
    "SPLIT_NAMES",
    "ArrayDataset",
    "DatasetSplits",
    "Normalization",
    "calibration_subset",
    "compute_normalization",
    "iterate_batches",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "load_npz",
    "load_synthetic",
    "read_idx",
    "split_train_val",
    "write_idx",
]

FASHION_MNIST_NAMES = ("fashion-mnist", "fmnist", "fashion_mnist", "fashionmnist")
FASHION_MNIST_VAL_SIZE = 5000
OTHER_VAL_SIZE = 0.1


def load_dataset(
    name_or_path: str | Path,
    root: Path | None = None,
    val_size: int | float | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Load a dataset by name or path as train / val / test splits.

    Accepts "fashion-mnist" (or "fmnist"; files under `root`, else
    $EDGEVIT_FASHION_MNIST, else the Debian package path), "synthetic:CxHxW[:K]"
    (seeded random images, fixed split sizes: see `load_synthetic`), a directory (image folder,
    see `load_image_folder`) or a `.npz` file (see `load_npz`). A relative path is also
    looked up under `root`. val_size: count or fraction; None means 5000 for
    Fashion-MNIST (the 55k/5k split) and 10% otherwise. Images uint8 [N, C, H, W],
    labels int64 [N]. Anything else raises DataError listing the accepted forms.
    """
    text = str(name_or_path).strip()
    if text.lower() in FASHION_MNIST_NAMES:
        size = FASHION_MNIST_VAL_SIZE if val_size is None else val_size
        return load_fashion_mnist(root=root, val_size=size, seed=seed)
    if is_synthetic(text):
        return load_synthetic(text)
    size = OTHER_VAL_SIZE if val_size is None else val_size
    path = _resolve_path(text, root)
    if path.suffix.lower() == ".npz":
        return load_npz(path, val_size=size, seed=seed)
    if path.is_dir():
        return load_image_folder(path, val_size=size, seed=seed)
    where = "does not exist" if not path.exists() else "is neither a directory nor an .npz file"
    raise DataError(
        f"unknown dataset {text!r}: {path} {where}. Accepted: 'fashion-mnist' (or 'fmnist'), 'synthetic:CxHxW', "
        f"an image folder (<dir>/<class>/*.png, or <dir>/train and <dir>/test), or an .npz file "
        f"with x_train, y_train, x_test, y_test"
    )


def _resolve_path(text: str, root: Path | None) -> Path:
    """`text` as a path; a relative one that exists under `root` is taken from there."""
    path = Path(text).expanduser()
    if root is not None and not path.is_absolute() and not path.exists():
        candidate = Path(root).expanduser() / path
        if candidate.exists():
            return candidate
    return path
