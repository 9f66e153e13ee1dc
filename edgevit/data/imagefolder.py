"""Image folders: root/<class>/*.png|jpg|jpeg|bmp, read with Pillow.

Two layouts are understood:

* split folders: root/train/<class>/..., root/test/<class>/... and optionally
  root/val/<class>/...; a missing val (or test) split is carved out of train;
* flat: root/<class>/...; test and val are carved out deterministically.

Classes are the sorted subfolder names (of root/train in the split layout).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevit.errors import DataError

from edgevit.data.dataset import ArrayDataset, DatasetSplits, split_off

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass
class _Format:
    """The common mode ("L" / "RGB") and size (width, height) every image is converted to."""

    mode: str | None = None
    size: tuple[int, int] | None = None
    resize: bool = False
    first: Path | None = None


def load_image_folder(
    root: str | Path,
    val_size: int | float = 0.1,
    test_size: int | float = 0.1,
    seed: int = 0,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> DatasetSplits:
    """Load an image folder as train / val / test splits.

    Images become uint8 [N, C, H, W] with C = 1 (mode L) or 3 (RGB): `channels` if given,
    else chosen from the first image. All images must share one size unless
    `image_size` (int or (H, W)) is given, then they are resized to it. Labels are int64
    [N] indexing the sorted class folder names. val_size / test_size (count or
    fraction) apply only to splits that have no folder of their own; splits are
    seeded by `seed`. Raises DataError for missing/empty folders, unreadable files
    and mixed sizes.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a directory")
    name = root.resolve().name or "images"
    fmt = _initial_format(image_size, channels)
    if (root / "train").is_dir():
        return _load_split_layout(root, name, fmt, val_size, test_size, seed)
    classes = class_names(root)
    full = _load_dataset(root, classes, fmt, f"{name}/train")
    rest, test = split_off(full, test_size, seed, "test_size", "test")
    train, val = split_off(rest, val_size, seed, "val_size", "val")
    return DatasetSplits(name=name, train=train, val=val, test=test)


def class_names(folder: Path) -> list[str]:
    """Sorted names of the (non-hidden) subfolders of `folder`; DataError if there are none."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        loose = [p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES][:3]
        hint = f" (found loose images such as {', '.join(loose)}: move them into one folder per class)" if loose else ""
        raise DataError(f"image folder {folder} has no class subfolders; expected {folder}/<class>/*.png{hint}")
    return names


def image_files(folder: Path) -> list[Path]:
    """Sorted image files (png/jpg/jpeg/bmp, any case) directly in `folder`; DataError if none."""
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _load_split_layout(
    root: Path, name: str, fmt: _Format, val_size: int | float, test_size: int | float, seed: int
) -> DatasetSplits:
    """root/train, root/test and optionally root/val, each holding one folder per class."""
    classes = class_names(root / "train")
    train = _load_dataset(root / "train", classes, fmt, f"{name}/train")
    if (root / "test").is_dir():
        test = _load_dataset(root / "test", classes, fmt, f"{name}/test")
    else:
        train, test = split_off(train, test_size, seed, "test_size", "test")
    if (root / "val").is_dir():
        val = _load_dataset(root / "val", classes, fmt, f"{name}/val")
    else:
        train, val = split_off(train, val_size, seed, "val_size", "val")
    return DatasetSplits(name=name, train=train, val=val, test=test)


def _load_dataset(folder: Path, classes: list[str], fmt: _Format, name: str) -> ArrayDataset:
    """Every image under folder/<class>/ as an ArrayDataset (classes index the labels)."""
    present = class_names(folder)
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise DataError(
            f"{folder} has class folder(s) {', '.join(unknown)} that the training split does not have; "
            f"known classes: {', '.join(classes)}"
        )
    images, labels = [], []
    for label, cls in enumerate(classes):
        if cls not in present:
            continue
        for path in image_files(folder / cls):
            images.append(_read_image(path, fmt))
            labels.append(label)
    return ArrayDataset(np.stack(images), np.asarray(labels, dtype=np.int64), list(classes), name)


def _initial_format(image_size: int | tuple[int, int] | None, channels: int | None) -> _Format:
    """The format fixed by the caller's options; the rest is taken from the first image."""
    fmt = _Format()
    if channels is not None:
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        fmt.mode = "L" if channels == 1 else "RGB"
    if image_size is not None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if not all(isinstance(v, int) and v >= 1 for v in (h, w)):
            raise DataError(f"image_size must be a positive int or (height, width), got {image_size!r}")
        fmt.size, fmt.resize = (w, h), True
    return fmt


def _read_image(path: Path, fmt: _Format) -> np.ndarray:
    """One image as uint8 [C, H, W] in `fmt` (mode and size set from it if still open)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if fmt.mode is None:
                fmt.mode = "L" if im.mode in _GRAY_MODES else "RGB"
            if fmt.size is None:
                fmt.size, fmt.first = im.size, path
            if im.size != fmt.size:
                if not fmt.resize:
                    raise DataError(
                        f"{path}: image is {im.size[1]}x{im.size[0]} (HxW) but {fmt.first} is "
                        f"{fmt.size[1]}x{fmt.size[0]}; all images must share a size, or pass an "
                        f"image size to resize them"
                    )
                converted = im.convert(fmt.mode).resize(fmt.size, Image.BILINEAR)
            else:
                converted = im.convert(fmt.mode)
            arr = np.asarray(converted, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
