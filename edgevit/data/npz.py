"""Datasets stored as one NumPy .npz file.

Keys: x_train, y_train, x_test, y_test (required); x_val, y_val (optional, as a
pair); classes (optional 1-D string array). Images may be [N, H, W] (grayscale),
[N, H, W, C] (channels-last) or [N, C, H, W] (when dim 1 is 1 or 3 and the last
dim is not); uint8, or floats in [0, 1], or integers in 0..255.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from edgevit.errors import DataError

from edgevit.data.dataset import ArrayDataset, DatasetSplits, split_train_val

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CHANNELS = (1, 3)


def load_npz(path: str | Path, val_size: int | float = 0.1, seed: int = 0) -> DatasetSplits:
    """Load an .npz dataset as train / val / test splits.

    Images become uint8 [N, C, H, W], labels int64 [N]. Without x_val / y_val, val is
    `val_size` images (count or fraction) carved out of train with a permutation
    seeded by `seed`. Errors name the key and what is wrong with it.
    """
    path = Path(path).expanduser()
    arrays = _read_npz(path)
    has_val = "x_val" in arrays or "y_val" in arrays
    if has_val and not ("x_val" in arrays and "y_val" in arrays):
        raise DataError(f"{path}: x_val and y_val must be given together (found only one of them)")
    splits = ("train", "val", "test") if has_val else ("train", "test")
    images = {s: to_nchw_uint8(arrays[f"x_{s}"], f"{path}: x_{s}") for s in splits}
    labels = {s: _labels(arrays[f"y_{s}"], len(images[s]), f"{path}: y_{s}") for s in splits}
    _check_same_shape(images, path)
    classes = _classes(arrays.get("classes"), labels, path)
    name = path.stem
    ds = {s: ArrayDataset(images[s], labels[s], list(classes), f"{name}/{s}") for s in splits}
    if not has_val:
        ds["train"], ds["val"] = split_train_val(ds["train"], val_size, seed)
    return DatasetSplits(name=name, train=ds["train"], val=ds["val"], test=ds["test"])


def to_nchw_uint8(x: np.ndarray, what: str = "images") -> np.ndarray:
    """Images in any accepted layout/dtype → uint8 [N, C, H, W] (C-contiguous).

    Accepts [N, H, W], [N, H, W, C] with C in (1, 3), or [N, C, H, W] with C in (1, 3)
    when the last dim is not 1 or 3; dtype uint8, float in [0, 1] (scaled by 255 and
    rounded) or integer in 0..255. `what` names the array in errors.
    """
    x = _to_uint8(np.asarray(x), what)
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    if x.ndim != 4:
        raise DataError(
            f"{what} has shape {list(x.shape)}; expected [N, H, W], [N, H, W, C] or [N, C, H, W]"
        )
    if x.shape[-1] in _CHANNELS:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.shape[1] in _CHANNELS:
        return np.ascontiguousarray(x)
    raise DataError(
        f"{what} has shape {list(x.shape)}: cannot find the channel axis (neither dim 1 nor the last "
        f"dim is 1 or 3); store [N, H, W, C] or [N, C, H, W] with 1 or 3 channels"
    )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of the file; DataError if it is missing, unreadable or lacks required keys."""
    if not path.is_file():
        raise DataError(f"npz dataset {path} does not exist")
    _check_zip(path)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            for key in z.files:
                try:
                    arrays[key] = z[key]
                except ValueError as exc:
                    raise DataError(
                        f"{path}: key {key!r} cannot be loaded without pickle ({exc}); "
                        f"store numbers or a plain string array"
                    ) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DataError(
            f"{path}: missing key(s) {', '.join(missing)}; an npz dataset needs "
            f"{', '.join(REQUIRED_KEYS)} (found: {', '.join(sorted(arrays)) or 'nothing'})"
        )
    return arrays


def _check_zip(path: Path) -> None:
    """DataError unless `path` starts like a zip archive (what numpy.savez writes): numpy would
    otherwise try to unpickle any other file and answer with advice about allow_pickle."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise DataError(f"{path}: cannot read the npz dataset ({e.strerror or e})") from None
    if head[:2] != b"PK":
        what = "an empty file" if not head else ("a single .npy array" if head.startswith(b"\x93NUMP") else
                                                 "not a zip archive")
        raise DataError(f"{path}: not a readable .npz dataset ({what}); write one with numpy.savez(path, "
                        "x_train=..., y_train=..., x_test=..., y_test=...)")


def _to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """uint8 as is; floats in [0, 1] → round(x * 255); integers in 0..255 → cast."""
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.floating):
        if x.size and (not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0):
            raise DataError(
                f"{what}: float images must be finite and in [0, 1] (found {np.nanmin(x):g}..{np.nanmax(x):g}); "
                f"scale them to [0, 1] or store uint8"
            )
        return np.round(x.astype(np.float64) * 255.0).astype(np.uint8)
    if np.issubdtype(x.dtype, np.integer) and x.dtype != np.bool_:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{what}: integer images must be in 0..255 (found {x.min()}..{x.max()}); store uint8")
        return x.astype(np.uint8)
    raise DataError(f"{what}: images must be uint8 or floats in [0, 1], got dtype {x.dtype}")


def _labels(y: np.ndarray, n: int, what: str) -> np.ndarray:
    """Class indices as int64 [n]; accepts [n] or [n, 1] integer arrays."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what} has shape {list(y.shape)}; expected [N] class indices (not one-hot)")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be integers (class indices), got dtype {y.dtype}")
    if y.shape[0] != n:
        raise DataError(f"{what} has {y.shape[0]} labels but the matching images array has {n} images")
    if y.size and y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0, found {int(y.min())}")
    return y.astype(np.int64)


def _check_same_shape(images: dict[str, np.ndarray], path: Path) -> None:
    """Every split must have the same (C, H, W)."""
    shapes = {s: tuple(x.shape[1:]) for s, x in images.items()}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"x_{s}: {list(v)}" for s, v in shapes.items())
        raise DataError(f"{path}: splits have different image shapes [C, H, W] ({desc})")


def _classes(raw: np.ndarray | None, labels: dict[str, np.ndarray], path: Path) -> list[str]:
    """Names from the `classes` key, or "0".."K-1" from the largest label."""
    top = max((int(y.max()) for y in labels.values() if y.size), default=0)
    if raw is None:
        return [str(i) for i in range(top + 1)]
    if raw.ndim != 1 or raw.dtype.kind not in "US":
        raise DataError(f"{path}: classes must be a 1-D string array, got {raw.dtype} {list(raw.shape)}")
    names = [c.decode() if isinstance(c, bytes) else str(c) for c in raw.tolist()]
    if top >= len(names):
        raise DataError(f"{path}: classes has {len(names)} names but a label is {top}")
    return names
