"""Fashion-MNIST from the Debian package `dataset-fashion-mnist` (no network, ever).

The package installs gzip'd IDX files in /usr/share/datasets/fashion-mnist/; the
EDGEVIT_FASHION_MNIST environment variable or an explicit root (--data-root) points
elsewhere. Uncompressed copies of the files are accepted as well.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from edgevit.errors import DataError

from edgevit.data.dataset import ArrayDataset, DatasetSplits, split_train_val
from edgevit.data.idx import read_idx

NAME = "fashion-mnist"
ENV_VAR = "EDGEVIT_FASHION_MNIST"
DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
#: role → file name without ".gz"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def fashion_mnist_root(root: str | Path | None = None) -> Path:
    """The folder to read: `root` if given, else $EDGEVIT_FASHION_MNIST, else the Debian path."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    return Path(env).expanduser() if env else DEFAULT_ROOT


def load_fashion_mnist(root: str | Path | None = None, val_size: int | float = 5000, seed: int = 0) -> DatasetSplits:
    """Fashion-MNIST as train / val / test splits.

    Images uint8 [N, 1, 28, 28], labels int64 [N] in 0..9 (names in `CLASSES`).
    val is `val_size` images (count or fraction) taken from the 60k training images
    with a permutation seeded by `seed`; test is the official 10k set. Decoded arrays
    are cached per root, so repeated calls are cheap.
    """
    folder = fashion_mnist_root(root)
    paths = _find_files(folder)
    train_x, train_y, test_x, test_y = _decode(*(str(paths[k].resolve()) for k in FILES))
    full_train = ArrayDataset(train_x[:, None], train_y, list(CLASSES), f"{NAME}/train")
    train, val = split_train_val(full_train, val_size, seed)
    test = ArrayDataset(test_x[:, None].copy(), test_y, list(CLASSES), f"{NAME}/test")
    return DatasetSplits(name=NAME, train=train, val=val, test=test)


def _find_files(folder: Path) -> dict[str, Path]:
    """role → existing path (prefers NAME.gz, then NAME); DataError listing what is missing."""
    found, missing = {}, []
    for role, stem in FILES.items():
        candidates = [folder / f"{stem}.gz", folder / stem]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            missing.append(f"{stem}[.gz]")
        else:
            found[role] = hit
    if missing:
        where = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise DataError(
            f"Fashion-MNIST not found: {folder} {where}. Looked for "
            f"{', '.join(f'{s}[.gz]' for s in FILES.values())}. Install the Debian package with "
            f"`apt-get install dataset-fashion-mnist`, or point --data-root / ${ENV_VAR} at a folder "
            f"holding these files."
        )
    return found


@functools.lru_cache(maxsize=4)
def _decode(train_images: str, train_labels: str, test_images: str, test_labels: str) -> tuple[np.ndarray, ...]:
    """Read and check the four IDX files; returns read-only (train_x, train_y, test_x, test_y).

    Images uint8 [N, 28, 28], labels uint8 [N]. Cached on the file paths.
    """
    arrays = []
    for images_path, labels_path in ((train_images, train_labels), (test_images, test_labels)):
        images, labels = read_idx(images_path), read_idx(labels_path)
        _check_pair(images, labels, images_path, labels_path)
        arrays += [images, labels]
    for a in arrays:
        a.setflags(write=False)  # shared by every caller: nobody may edit the cache
    return tuple(arrays)


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path: str, labels_path: str) -> None:
    """images must be uint8 [N, 28, 28] and labels uint8 [N] with values 0..9."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{images_path}: expected uint8 [N, 28, 28] images, got {images.dtype} {list(images.shape)}")
    if labels.dtype != np.uint8 or labels.shape != (images.shape[0],):
        raise DataError(
            f"{labels_path}: expected uint8 [{images.shape[0]}] labels to match {images_path}, "
            f"got {labels.dtype} {list(labels.shape)}"
        )
    if labels.size and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{labels_path}: label {int(labels.max())} is out of range 0..{len(CLASSES) - 1}")
