"""In-memory image datasets as NumPy arrays, their splits and batching.

Every loader in `edgevit.data` returns a `DatasetSplits` of three `ArrayDataset`s.
Images are always uint8 [N, C, H, W] and labels int64 [N]; conversion to float
(and normalization) happens later, see `edgevit.data.normalize`.

Everything here is deterministic: shuffles and splits use a seeded
`numpy.random.Generator`, so the same seed gives the same indices on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from edgevit.errors import DataError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(eq=False)
class ArrayDataset:
    """A labelled image set held in memory.

    images: uint8 [N, C, H, W]; labels: int64 [N] with values in [0, len(classes));
    classes: class names, index = label; name: for messages and reports.
    Integer labels of another dtype are converted to int64; anything else that does
    not fit raises `DataError`.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)
    name: str = "dataset"

    def __post_init__(self) -> None:
        self.classes = _check_classes(self.classes, self.name)
        _check_images(self.images, self.name)
        self.labels = _check_labels(self.labels, len(self.images), len(self.classes), self.name)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, n={len(self)}, image_shape={self.image_shape}, "
            f"classes={len(self.classes)})"
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        """Number of classes (len(classes))."""
        return len(self.classes)

    def class_counts(self) -> np.ndarray:
        """int64 [num_classes]: how many images each class has."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> "ArrayDataset":
        """A new dataset of the images at `indices` (int [K] or bool mask [N]), in that order.

        The arrays are copies, so editing the subset never changes this dataset.
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise DataError(f"{self.name}: boolean mask has shape {idx.shape}, expected ({len(self)},)")
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise DataError(f"{self.name}: subset indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise DataError(f"{self.name}: subset index out of range for a dataset of {len(self)} images")
        return ArrayDataset(
            images=np.take(self.images, idx, axis=0),
            labels=np.take(self.labels, idx, axis=0),
            classes=list(self.classes),
            name=self.name if name is None else name,
        )

    def take(self, n: int) -> "ArrayDataset":
        """The first `n` images (all of them if n >= len); a copy, like `subset`."""
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise DataError(f"{self.name}: take(n) needs a count >= 0, got {n!r}")
        return self.subset(np.arange(min(int(n), len(self)), dtype=np.int64))


@dataclass(eq=False)
class DatasetSplits:
    """The train / val / test splits of one dataset (each an `ArrayDataset`)."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset

    def get(self, split_name: str) -> ArrayDataset:
        """The split called `split_name` ("train", "val" or "test"); DataError otherwise."""
        key = str(split_name).strip().lower()
        if key not in SPLIT_NAMES:
            raise DataError(
                f"dataset {self.name!r} has no split {split_name!r}; valid splits: {', '.join(SPLIT_NAMES)}"
            )
        return getattr(self, key)

    def sizes(self) -> dict[str, int]:
        """{"train": N, "val": N, "test": N}."""
        return {s: len(getattr(self, s)) for s in SPLIT_NAMES}


def resolve_count(size: int | float, n: int, what: str) -> int:
    """Turn a split size into a count out of `n` items.

    `size` is an int count (>= 0) or a float fraction in [0, 1); returns an int.
    """
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, (int, float, np.integer, np.floating)):
        raise DataError(f"{what} must be a count (int >= 0) or a fraction in [0, 1), got {size!r}")
    if isinstance(size, (float, np.floating)):
        if not 0.0 <= float(size) < 1.0:
            raise DataError(f"{what}={size!r}: a fraction must be in [0, 1); give a count as an integer")
        return int(round(float(size) * n))
    if size < 0:
        raise DataError(f"{what} must be >= 0, got {size}")
    return int(size)


def split_indices(n: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministically split range(n) into (kept, held_out) int64 index arrays.

    held_out has `holdout` entries, kept the other n - holdout; both sorted,
    disjoint and together covering range(n). Same (n, holdout, seed) → same split.
    """
    if not 0 <= holdout <= n:
        raise DataError(f"cannot hold out {holdout} of {n} images")
    perm = np.random.default_rng(seed).permutation(n)
    held = np.sort(perm[:holdout]).astype(np.int64)
    kept = np.sort(perm[holdout:]).astype(np.int64)
    return kept, held


def split_train_val(train: ArrayDataset, val_size: int | float, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """Split `train` into (train, val) with a seeded permutation.

    val_size: image count, or a fraction in [0, 1). Returns two `ArrayDataset`s
    (uint8 [N, C, H, W] images, int64 labels) that are disjoint and together hold
    every image once, each in its original order.
    """
    return split_off(train, val_size, seed, "val_size", "val")


def split_off(ds: ArrayDataset, size: int | float, seed: int, what: str, new_split: str) -> tuple[ArrayDataset, ArrayDataset]:
    """Split `ds` into (kept, held_out) like `split_train_val`, for any held-out split.

    size: count or fraction; `what` names the option in errors; `new_split` names the
    held-out part ("val", "test"). Both parts keep uint8 [N, C, H, W] / int64 [N].
    """
    count = resolve_count(size, len(ds), what)
    if count >= len(ds):
        raise DataError(
            f"{what}={size} leaves no training images: {ds.name} has {len(ds)} images; "
            f"use a smaller count or a fraction such as 0.1"
        )
    kept, held = split_indices(len(ds), count, seed)
    return ds.subset(kept), ds.subset(held, name=_sibling_name(ds.name, new_split))


def calibration_subset(ds: ArrayDataset, n: int = 256, seed: int = 0) -> ArrayDataset:
    """A deterministic, class-balanced subset of `ds` for calibration (e.g. quantization).

    Picks classes round-robin, each class's images in a seeded random order, so every
    class gets n // num_classes images (±1) while it has images left; any prefix of the
    result is balanced too. n is capped at len(ds). Returns uint8 [n, C, H, W] images.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise DataError(f"calibration size must be an integer >= 1, got {n!r}")
    if len(ds) == 0:
        raise DataError(f"{ds.name}: cannot draw calibration images from an empty dataset")
    n = min(int(n), len(ds))
    rng = np.random.default_rng(seed)
    rank = np.empty(len(ds), dtype=np.int64)
    for c in range(ds.num_classes):
        members = np.flatnonzero(ds.labels == c)
        rank[rng.permutation(members)] = np.arange(members.size)
    order = np.lexsort((ds.labels, rank))  # by rank within class, then by class
    return ds.subset(order[:n], name=f"{ds.name}/calib")


def iterate_batches(
    ds: ArrayDataset,
    batch_size: int,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (images uint8 [B, C, H, W], labels int64 [B]) batches covering `ds` once.

    shuffle=True uses a seeded permutation (seed=None → a fresh random order each call).
    The last batch is smaller unless drop_last=True. Batches are copies.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    order = np.random.default_rng(seed).permutation(len(ds)) if shuffle else np.arange(len(ds))
    stop = len(ds) - len(ds) % batch_size if drop_last else len(ds)
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield np.take(ds.images, idx, axis=0), np.take(ds.labels, idx, axis=0)


def _sibling_name(name: str, split: str) -> str:
    """'fmnist/train' → 'fmnist/val'; 'x' → 'x/val'."""
    base = name.rsplit("/", 1)[0] if "/" in name else name
    return f"{base}/{split}"


def _check_classes(classes: Sequence[str], name: str) -> list[str]:
    """Class names as a list of non-empty, unique strings."""
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)):
        raise DataError(f"{name}: classes must be a list of names, got {type(classes).__name__}")
    out = [str(c) for c in classes]
    if not out:
        raise DataError(f"{name}: a dataset needs at least one class")
    if len(set(out)) != len(out):
        raise DataError(f"{name}: class names must be unique, got {out}")
    return out


def _check_images(images: np.ndarray, name: str) -> None:
    """images must be a uint8 [N, C, H, W] array with C, H, W >= 1."""
    if not isinstance(images, np.ndarray):
        raise DataError(f"{name}: images must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise DataError(f"{name}: images must be uint8, got {images.dtype}")
    if images.ndim != 4 or min(images.shape[1:]) < 1:
        raise DataError(f"{name}: images must have shape [N, C, H, W], got {list(images.shape)}")


def _check_labels(labels: np.ndarray, n: int, num_classes: int, name: str) -> np.ndarray:
    """labels as int64 [n] with values in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.size == 0 and n == 0:
        return labels.astype(np.int64).reshape(0)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{name}: labels must be integers, got {labels.dtype}")
    if labels.shape != (n,):
        raise DataError(f"{name}: labels must have shape [{n}] to match the images, got {list(labels.shape)}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"{name}: labels must be in [0, {num_classes}) for {num_classes} classes, found {lo}..{hi}"
        )
    return labels.astype(np.int64, copy=False)
